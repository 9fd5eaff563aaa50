"""Build the service and the page, then serve (used by ``app.py`` and the tests).

Lives in ``demo/`` with the rest of the Gradio code: the library package ``caphuman`` never imports
``demo``."""

from __future__ import annotations

import logging
import os
import threading

from caphuman.studio import serving


def create_app(head: str = "auto", weights: str | None = None, device: str = "auto", warmup: bool = True,
               download: bool | None = None, compile: bool = False):
    """(service, gr.Blocks with the queue configured). Generation weights load in a background
    thread so the page is up at once; on ZeroGPU before the server starts, onto CUDA
    (:func:`caphuman.studio.startup.start_generation`). ``download``
    (default: on Spaces) fetches and converts the public weights in the background when no
    generation weights are found; Generate works once that finishes."""
    from caphuman.studio.service import StudioService
    from caphuman.studio.startup import provision_private_files, start_generation
    from demo.ui import build_demo

    provision_private_files()
    # Converted weights: --weights (folder or Hub repo id), else checkpoints/, else the Hub cache.
    from caphuman.weights.download import resolve_weights

    found = resolve_weights(weights)
    weights = str(found) if (found / "model_index.json").is_file() or weights else None
    service = StudioService(head=head, weights=weights, device=device, compile=compile)
    service.warm_up(load_generator=False)  # numba compile of the renderer (first preview is fast)
    if download is None:
        download = serving.on_spaces() and not os.environ.get("HF_HUB_OFFLINE")
    start_generation(service, download=bool(download), warmup=warmup)  # ZeroGPU: now; else in the background
    demo = build_demo(service)
    demo.queue(max_size=serving.QUEUE_MAX_SIZE, default_concurrency_limit=serving.PREVIEW_CONCURRENCY)
    return service, demo


def launch_kwargs(host: str | None, port: int | None) -> dict:
    from pathlib import Path

    from demo import live
    from demo.ui import CSS, example_photos, page_js

    allowed = sorted({str(Path(p).parent) for p in example_photos()} | {str(live.PAYLOAD_DIR)})
    return dict(server_name=serving.resolve_host(host), server_port=serving.resolve_port(port),
                max_file_size=serving.max_file_size(), show_error=False, footer_links=["api"],
                allowed_paths=allowed, css=CSS, js=page_js(), ssr_mode=False, app_kwargs=serving.app_kwargs())


def launch(host=None, port=None, weights=None, device="auto", head="auto", warmup=True, block=True, download=None,
           compile=False):
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    service, demo = create_app(head=head, weights=weights, device=device, warmup=warmup, download=download,
                               compile=compile)
    if block:
        _stop_on_sigterm()
    demo.launch(prevent_thread_lock=not block, **launch_kwargs(host, port))
    return service, demo


def _stop_on_sigterm() -> None:
    """SIGTERM (``docker stop``, a Space restart, ``kill``) stops the server like Ctrl+C, so the
    exit handlers run (the studio's output folder is removed)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, stop)
    except (ValueError, OSError):  # not available here
        pass
