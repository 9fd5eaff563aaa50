"""Where and how the studio is served: host choice, upload limit, queue sizes."""

from __future__ import annotations

import os

#: Largest upload accepted by the server (photos; FLAME2023Open.zip needs the larger limit).
MAX_FILE_SIZE = "20mb"
MAX_FILE_SIZE_WITH_FLAME = "64mb"
#: Installing FLAME by upload: on for local studios, off on a Space unless its owner sets this to 1.
FLAME_UPLOAD_ENV = "CAPHUMAN_ALLOW_FLAME_UPLOAD"
#: Concurrent preview renders (CPU only, ~15 ms each at 512^2).
PREVIEW_CONCURRENCY = 16
#: Photo analyses (decode + detect + fit) running at once; more wait their turn. A worst-case
#: upload takes up to the decode budget (see caphuman.face.intake) while it decodes.
ANALYSIS_CONCURRENCY = 2
ANALYSIS_CONCURRENCY_ENV = "CAPHUMAN_ANALYSIS_CONCURRENCY"
#: Gradio cache clean-up (``delete_cache``): every FREQUENCY seconds delete files older than AGE.
CACHE_CLEAN_FREQUENCY_S = 60
CACHE_MAX_AGE_S = 300
#: Concurrent generations (one per GPU).
GENERATE_CONCURRENCY = 1
#: Queued jobs beyond which new requests are refused.
QUEUE_MAX_SIZE = 64


def on_spaces() -> bool:
    return bool(os.environ.get("SPACE_ID"))


def resolve_host(host: str | None) -> str:
    """``--host`` when given, else 0.0.0.0 on Hugging Face Spaces (``SPACE_ID`` set), else 127.0.0.1."""
    if host:
        return host
    return "0.0.0.0" if on_spaces() else "127.0.0.1"


def resolve_port(port: int | None) -> int:
    """``--port``, else ``GRADIO_SERVER_PORT``, else 7860."""
    if port is not None:
        return int(port)
    return int(os.environ.get("GRADIO_SERVER_PORT", "7860"))


def flame_upload_enabled() -> bool:
    """May users install FLAME by uploading the release zip? Local: yes unless the variable says 0;
    on a Space: only when the owner set ``CAPHUMAN_ALLOW_FLAME_UPLOAD=1``."""
    value = os.environ.get(FLAME_UPLOAD_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    return not on_spaces() or value in ("1", "true", "yes", "on")


def max_file_size() -> str:
    return MAX_FILE_SIZE_WITH_FLAME if flame_upload_enabled() else MAX_FILE_SIZE


def analysis_concurrency() -> int:
    """``CAPHUMAN_ANALYSIS_CONCURRENCY`` (a whole number >= 1) or ``ANALYSIS_CONCURRENCY``."""
    raw = os.environ.get(ANALYSIS_CONCURRENCY_ENV, "").strip()
    try:
        n = int(raw) if raw else ANALYSIS_CONCURRENCY
    except ValueError:
        n = ANALYSIS_CONCURRENCY
    return max(1, n)
