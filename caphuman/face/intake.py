"""Image intake shared by every entry point: any file or array -> RGB uint8 (H, W, 3).

Handles EXIF orientation, greyscale, greyscale+alpha, palette, RGBA/LA (composited on white), CMYK,
16-bit and float images. Limits: files over ``MAX_PIXELS`` decoded pixels are refused (PIL's
decompression-bomb guard), images whose longer side exceeds ``max_side`` are downscaled
(Lanczos) keeping the aspect ratio. Every failure is an :class:`~caphuman.errors.InputError`
with one readable line.

The original reads with scikit-image and crashes on greyscale files and drops alpha without
compositing (reference §7); here every input becomes RGB first, so DECA, the face parser,
FaceNet and CLIP all see the same 3-channel image.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Union

import numpy as np

from caphuman.errors import InputError

#: Refuse images with more decoded pixels than this (about 16k x 16k).
MAX_PIXELS = 250_000_000
#: Default longest side after intake; larger photos are downscaled.
DEFAULT_MAX_SIDE = 4096
#: Smallest accepted side in pixels.
MIN_SIDE = 16

ImageLike = Union[str, os.PathLike, bytes, np.ndarray, "PIL.Image.Image"]  # noqa: F821


def _white_composite(img):
    """Composite an image with alpha over white; returns RGB PIL image."""
    from PIL import Image

    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _array_to_rgb_uint8(arr: np.ndarray) -> np.ndarray:
    """Numeric array (H, W), (H, W, 1|2|3|4) of any dtype -> RGB uint8.

    Integer images are scaled by their dtype's maximum (uint16: /257), floats are taken as [0, 1].
    Alpha (2nd of 2 or 4th of 4 channels) is composited over white.
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image array shape {tuple(np.asarray(arr).shape)}")
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError("image array contains NaN or infinity")
        f = np.clip(a.astype(np.float64), 0.0, 1.0)
    elif np.issubdtype(a.dtype, np.integer):
        info = np.iinfo(a.dtype)
        f = np.clip(a.astype(np.float64), 0, None) / float(info.max)
    else:
        raise InputError(f"unsupported image dtype {a.dtype}")
    c = f.shape[2]
    if c in (2, 4):
        alpha = f[:, :, -1:]
        colour = f[:, :, :-1]
        f = colour * alpha + (1.0 - alpha)
        c -= 1
    if c == 1:
        f = np.repeat(f, 3, axis=2)
    return np.clip(np.rint(f * 255.0), 0, 255).astype(np.uint8)


def _pil_to_rgb_uint8(img) -> np.ndarray:
    from PIL import ImageOps

    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF must not make a readable photo unreadable
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(img)
        if mode == "I":
            a = a.astype(np.int64)
            hi = 65535 if a.max(initial=0) > 255 else 255
            return _array_to_rgb_uint8((np.clip(a, 0, hi) / hi).astype(np.float64))
        return _array_to_rgb_uint8(a.astype(np.uint16))
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        hi = 255.0 if a.max(initial=0) > 1.0 else 1.0
        return _array_to_rgb_uint8(np.clip(a / hi, 0, 1))
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return np.asarray(_white_composite(img))
    if mode != "RGB":  # L, 1, CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return np.asarray(img)


def _open_bytes(data: bytes, name: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    if len(data) == 0:
        raise InputError(f"{name}: the file is empty")
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise InputError(f"{name}: {w}x{h} is too large (more than {MAX_PIXELS:,} pixels)")
                img.load()
                return _pil_to_rgb_uint8(img)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name}: image is too large (more than {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: cannot decode image ({exc}); the file may be truncated or corrupt") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def load_image(source: ImageLike, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Read ``source`` (path, bytes, NumPy array or PIL image) as RGB uint8 (H, W, 3).

    ``max_side``: longest side after intake in pixels (downscaled with Lanczos if larger;
    None keeps the size). Raises InputError for missing, empty, truncated or non-image files
    and for images smaller than ``MIN_SIDE``.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        rgb = _open_bytes(data, str(path))
    elif isinstance(source, (bytes, bytearray, memoryview)):
        rgb = _open_bytes(bytes(source), "image")
    elif isinstance(source, np.ndarray):
        if source.size == 0:
            raise InputError("image array is empty")
        rgb = _array_to_rgb_uint8(source)
    elif hasattr(source, "mode") and hasattr(source, "size") and hasattr(source, "convert"):
        rgb = _pil_to_rgb_uint8(source)
    else:
        raise InputError(f"cannot read an image from {type(source).__name__}")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"image is {w}x{h}; at least {MIN_SIDE} pixels per side are needed")
    if max_side is not None and max(h, w) > max_side:
        rgb = resize_longest(rgb, max_side)
    return np.ascontiguousarray(rgb)


def resize_longest(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale so that the longer side is ``max_side`` pixels (Lanczos, aspect kept)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = max_side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.LANCZOS))


def pixel_hash(rgb: np.ndarray) -> str:
    """Content key of a decoded image: SHA-256 of its shape and pixels (hex)."""
    a = np.ascontiguousarray(rgb)
    h = hashlib.sha256()
    h.update(repr((a.shape, str(a.dtype))).encode())
    h.update(a.tobytes())
    return h.hexdigest()
