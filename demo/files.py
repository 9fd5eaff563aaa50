"""Files handed to Gradio: fast JPEG/PNG encodes written into a per-process folder.

Gradio copies each returned file into its cache right after the handler returns, so a rotating
set of names keeps this folder bounded (Gradio's own cache is pruned by ``delete_cache``)."""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from pathlib import Path

import numpy as np

_DIR = Path(tempfile.mkdtemp(prefix="caphuman-studio-"))
_counter = itertools.count()
_lock = threading.Lock()
RING = 1024


def _path(stem: str, suffix: str) -> Path:
    with _lock:
        n = next(_counter) % RING
    return _DIR / f"{stem}-{n:04d}{suffix}"


def write_bytes(data: bytes, stem: str, suffix: str) -> str:
    path = _path(stem, suffix)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return str(path)


def jpeg(img: np.ndarray, stem: str = "preview", quality: int = 92) -> str:
    """uint8 RGB (H, W, 3) -> path of a JPEG (about 3 ms at 512^2)."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return write_bytes(buf.tobytes(), stem, ".jpg")


def png(img: np.ndarray, stem: str = "image") -> str:
    from caphuman.render.preview_image import encode_png

    return write_bytes(encode_png(img), stem, ".png")


def npy(array: np.ndarray, stem: str = "hint") -> str:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return write_bytes(buf.getvalue(), stem, ".npy")


def text(content: str, stem: str, suffix: str) -> str:
    return write_bytes(content.encode(), stem, suffix)


def jpeg_bytes(img: np.ndarray, quality: int = 90) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def named_text(content: str, name: str) -> str:
    """A text file with a readable download name (``head-yaw30-smile05.json``): ``name`` inside a
    folder from the same rotating set of names."""
    with _lock:
        n = next(_counter) % RING
    folder = _DIR / f"named-{n:04d}"
    folder.mkdir(exist_ok=True)
    for old in folder.iterdir():
        old.unlink(missing_ok=True)
    path = folder / name
    path.write_text(content)
    return str(path)
