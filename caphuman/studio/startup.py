"""Start-up file provisioning for hosted studios (Hugging Face Spaces). Never bundles FLAME/DECA.

Environment variables / Space secrets:

* ``CAPHUMAN_CHECKPOINTS``: checkpoints root (default ``checkpoints/``; on Spaces use ``/data/checkpoints``
  with persistent storage, else the repo folder).
* ``CAPHUMAN_FLAME_DIR``: a folder holding ``flame2023_Open.pkl`` or ``generic_model.pkl`` + ``landmark_embedding.npy`` (+ optional
  ``FLAME_texture.npz``, ``head_template.obj``): linked into ``<checkpoints>/flame``.
* ``CAPHUMAN_DECA_PATH``: path of ``deca_model.tar``: linked into ``<checkpoints>/deca``.
* ``CAPHUMAN_PRIVATE_REPO`` (+ secret ``HF_TOKEN``): a private Hub model repo with ``flame/`` and
  ``deca/`` folders in the checkpoints layout; downloaded before the head model loads (a few MB).
* ``CAPHUMAN_WEIGHTS``: the generation folder (diffusers layout) for ``--weights``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger("caphuman.studio")


def _link(src: Path, dst: Path) -> None:
    if dst.exists() or not src.exists():
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        dst.symlink_to(src.resolve())
    except OSError as exc:
        log.warning("cannot link %s -> %s: %s", dst, src, exc)


def provision_private_files() -> list[str]:
    """Apply the variables above; returns one line per action (for the log)."""
    from caphuman.weights.registry import checkpoints_root

    root = checkpoints_root()
    done = []
    flame_dir = os.environ.get("CAPHUMAN_FLAME_DIR")
    if flame_dir:
        for name in ("flame2023_Open.pkl", "generic_model.pkl", "landmark_embedding.npy", "FLAME_texture.npz",
                     "head_template.obj", "installed.json"):
            _link(Path(flame_dir).expanduser() / name, root / "flame" / name)
        done.append(f"FLAME files from {flame_dir}")
    deca = os.environ.get("CAPHUMAN_DECA_PATH")
    if deca:
        _link(Path(deca).expanduser(), root / "deca" / "deca_model.tar")
        done.append(f"DECA from {deca}")
    repo = os.environ.get("CAPHUMAN_PRIVATE_REPO")
    if repo:
        try:
            from huggingface_hub import snapshot_download

            snapshot_download(repo, allow_patterns=["flame/*", "deca/*"], local_dir=str(root),
                              token=os.environ.get("HF_TOKEN"))
            done.append(f"FLAME/DECA from the private repo {repo}")
        except Exception as exc:  # noqa: BLE001 - the studio still runs with the built-in head
            log.warning("could not download %s (%s); using the built-in head", repo, exc.__class__.__name__)
    for line in done:
        log.info("provisioned %s", line)
    return done


def start_generation(service, download: bool = False, warmup: bool = True):
    """Make the generation models ready: fetch + convert + load when ``download`` and none are
    found, else load (``warmup``). Returns the background thread, or None when it ran here.

    On ZeroGPU it runs now, before the server starts: models must be loaded and moved to CUDA in
    the main process at start-up, outside the ``@spaces.GPU`` function (``spaces`` packs the CUDA
    weights when the server starts and forks its GPU worker from this process; with ``--compile``
    the ahead-of-time compilation runs here too). Elsewhere in a background thread, so the page is
    up at once."""
    import threading

    from caphuman.studio.gpu import on_zero_gpu

    if download and service.generator is None:
        job, name = service.fetch_weights, "download-weights"
    elif warmup and service.generator is not None:
        job, name = service.warm_up, "load-generator"
    else:
        return None
    if on_zero_gpu():
        log.info("ZeroGPU: loading the generation models before the server starts")
        job()
        return None
    thread = threading.Thread(target=job, name=name, daemon=True)
    thread.start()
    return thread
