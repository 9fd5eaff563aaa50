"""Where and how the studio is served: host choice, upload and request-body limits, queue sizes."""

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


#: Largest request body the server reads, except file uploads (those have ``max_file_size``). A
#: /generate call is a few kB (prompt <= 2000 characters, a head state of a few hundred numbers).
MAX_REQUEST_BODY = 1024 * 1024
#: A refused body up to this many times the limit is read and dropped before the 413 is sent
#: (clients see the answer rather than a reset); larger ones get the answer at once.
DRAIN_FACTOR = 8
#: Routes that stream multipart uploads through Gradio's own size-limited parser.
UPLOAD_ROUTES = ("/upload", "/process_recording")


class BodySizeLimit:
    """ASGI middleware: a request body above ``max_bytes`` is answered 413 before the app reads it
    (Content-Length checked first; bodies without one are counted while they arrive). Upload
    routes (:data:`UPLOAD_ROUTES`) pass through: Gradio limits them to ``max_file_size``."""

    def __init__(self, app, max_bytes: int = MAX_REQUEST_BODY):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def __call__(self, scope, receive, send):
        if scope.get("type") != "http" or scope.get("method") in ("GET", "HEAD", "OPTIONS") or \
                scope.get("path", "").rstrip("/").endswith(UPLOAD_ROUTES):
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await self._refuse(send, 400, "invalid Content-Length header")
                return
            if declared > self.max_bytes:
                if declared <= DRAIN_FACTOR * self.max_bytes:
                    await self._drain(receive, declared)
                await self._refuse(send, 413, self._too_large())
                return
        messages, total = [], 0
        while True:  # read the (small) body now, so nothing above the limit reaches the app
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            total += len(message.get("body", b""))
            if total > self.max_bytes:
                if message.get("more_body", False):
                    await self._drain(receive, DRAIN_FACTOR * self.max_bytes - total)
                await self._refuse(send, 413, self._too_large())
                return
            if not message.get("more_body", False):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    @staticmethod
    async def _drain(receive, budget: int) -> None:
        """Read and drop up to ``budget`` bytes of a refused body, so the client, still sending,
        reads the 413 instead of a reset connection (nothing is kept in memory)."""
        while budget > 0:
            message = await receive()
            if message["type"] != "http.request":
                return
            budget -= len(message.get("body", b""))
            if not message.get("more_body", False):
                return

    def _too_large(self) -> str:
        size = (f"{self.max_bytes / 2**20:g} MiB" if self.max_bytes >= 2**20 else f"{self.max_bytes / 1024:g} KiB")
        return f"request body too large (more than {size}); send files through the upload route"

    @staticmethod
    async def _refuse(send, status: int, detail: str) -> None:
        import json

        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def app_kwargs() -> dict:
    """Keyword arguments for Gradio's FastAPI app (``launch(app_kwargs=...)``): the body-size limit."""
    from starlette.middleware import Middleware

    return {"middleware": [Middleware(BodySizeLimit, max_bytes=MAX_REQUEST_BODY)]}


def analysis_concurrency() -> int:
    """``CAPHUMAN_ANALYSIS_CONCURRENCY`` (a whole number >= 1) or ``ANALYSIS_CONCURRENCY``."""
    raw = os.environ.get(ANALYSIS_CONCURRENCY_ENV, "").strip()
    try:
        n = int(raw) if raw else ANALYSIS_CONCURRENCY
    except ValueError:
        n = ANALYSIS_CONCURRENCY
    return max(1, n)
