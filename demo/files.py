"""Files handed to Gradio: fast JPEG/PNG/NumPy encodes kept in a ring bounded by bytes.

The folder lives inside Gradio's cache folder (``GRADIO_TEMP_DIR``, default ``/tmp/gradio``), so
Gradio serves the files from here instead of copying them (each file is written once). Every
name is unique (a counter plus a random token: names never repeat and cannot be guessed); when
the files written add up to more than :func:`ring_bytes` the oldest are deleted. Gradio's own
``delete_cache`` schedule may delete them earlier. The folder is created on the first write and
removed when the process exits.
"""

from __future__ import annotations

import atexit
import itertools
import os
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np

#: Default bytes kept on disk by this process's ring (MiB); ``CAPHUMAN_STUDIO_DISK_MB`` overrides it.
RING_MB = 512
RING_ENV = "CAPHUMAN_STUDIO_DISK_MB"

_lock = threading.Lock()
_counter = itertools.count()
_dir: Path | None = None
_files: "OrderedDict[Path, int]" = OrderedDict()
_total = 0
_registered = False


def ring_bytes() -> int:
    raw = os.environ.get(RING_ENV, "").strip()
    try:
        mb = float(raw) if raw else RING_MB
    except ValueError:
        mb = RING_MB
    return int((mb if mb > 0 else RING_MB) * 1024 * 1024)


def _cache_root() -> Path:
    try:
        from gradio.utils import get_upload_folder

        return Path(get_upload_folder())
    except Exception:  # noqa: BLE001 - without Gradio the system temp folder does
        return Path(tempfile.gettempdir())


def directory() -> Path:
    """This process's output folder (created on first use, removed at exit)."""
    global _dir, _total, _registered
    with _lock:
        if _dir is None or not _dir.is_dir():
            root = _cache_root()
            root.mkdir(parents=True, exist_ok=True)
            _dir = Path(tempfile.mkdtemp(prefix="caphuman-studio-", dir=root))
            _files.clear()
            _total = 0
            if not _registered:
                atexit.register(remove)
                _registered = True
        return _dir


def remove() -> None:
    """Delete the folder and everything in it (runs at exit)."""
    global _dir, _total
    with _lock:
        d, _dir = _dir, None
        _files.clear()
        _total = 0
    if d is not None:
        shutil.rmtree(d, ignore_errors=True)


def usage() -> dict:
    """{"dir", "files", "bytes", "limit"}: what the ring holds now."""
    with _lock:
        return {"dir": None if _dir is None else str(_dir), "files": len(_files), "bytes": _total,
                "limit": ring_bytes()}


def write_bytes(data: bytes, stem: str, suffix: str, download_name: str | None = None) -> str:
    """Write ``data`` under a new unique name (or as ``download_name`` inside a new unique folder,
    for a readable download name); evict the oldest files beyond the byte limit."""
    global _total
    d = directory()
    name = f"{stem}-{next(_counter):06d}-{secrets.token_hex(4)}{suffix}"
    if download_name is not None:
        d = d / name
        d.mkdir()
        name = download_name
    path = d / name
    tmp = d / ("." + name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    limit = ring_bytes()
    doomed = []
    with _lock:
        _files[path] = len(data)
        _total += len(data)
        while _total > limit and len(_files) > 1:
            old, size = _files.popitem(last=False)
            _total -= size
            doomed.append(old)
    for old in doomed:
        try:
            old.unlink()
            if old.parent != _dir:
                old.parent.rmdir()  # a download-name folder
        except OSError:  # already gone (Gradio's delete_cache) or never written
            pass
    return str(path)


def encode_jpeg(img: np.ndarray, quality: int = 92) -> bytes:
    """uint8 RGB (H, W, 3) -> JPEG bytes (about 2 ms at 512^2)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def jpeg(img: np.ndarray, stem: str = "preview", quality: int = 92) -> str:
    """uint8 RGB (H, W, 3) -> path of a JPEG (about 3 ms at 512^2)."""
    return write_bytes(encode_jpeg(img, quality), stem, ".jpg")


def png(img: np.ndarray, stem: str = "image") -> str:
    from caphuman.render.preview_image import encode_png

    return write_bytes(encode_png(img), stem, ".png")


def npy(array: np.ndarray, stem: str = "hint", dtype=None) -> str:
    """``array`` (cast to ``dtype`` when given) as a ``.npy`` file."""
    import io

    buf = io.BytesIO()
    np.save(buf, array if dtype is None else np.asarray(array, dtype=dtype))
    return write_bytes(buf.getvalue(), stem, ".npy")


def text(content: str, stem: str, suffix: str) -> str:
    return write_bytes(content.encode(), stem, suffix)


def named_text(content: str, name: str) -> str:
    """A text file with a readable download name (``head-yaw30-smile05.json``), in the ring."""
    return write_bytes(content.encode(), "named", "", download_name=name)
