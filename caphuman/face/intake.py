"""Image intake shared by every entry point: any file or array -> RGB uint8 (H, W, 3).

Handles EXIF orientation, greyscale, greyscale+alpha, palette, RGBA/LA (composited on white), CMYK,
16-bit and float images. Every failure is an :class:`~caphuman.errors.InputError` with one
readable line.

Decoding is bounded by memory, not only by pixel count (the size is read from the file header
before any pixel is decoded):

* more than ``MAX_PIXELS`` pixels: refused;
* larger than ``max_side`` (or than ``WORKING_PIXELS``, about 40 Mpx, which is more than a face
  photo needs): reduced while decoding where the format allows it (JPEG decodes at 1/2, 1/4 or
  1/8 scale) and downscaled (Lanczos) before the image is converted, so only one full-size
  buffer exists at a time;
* a decode that would still need more than ``decode_budget()`` bytes (PNG, WebP, TIFF... cannot
  be decoded at reduced size; an RGB pixel takes 4 bytes in memory): refused with the limit and
  what to do. ``CAPHUMAN_DECODE_BUDGET_MB`` changes the budget (default 512).

After a large decode the freed memory is handed back to the system (glibc ``malloc_trim``), so a
long-running studio returns to its baseline.

The original reads with scikit-image and crashes on greyscale files and drops alpha without
compositing (reference §7); here every input becomes RGB first, so DECA, the face parser,
FaceNet and CLIP all see the same 3-channel image.
"""

from __future__ import annotations

import hashlib
import io
import os
import sys
from pathlib import Path
from typing import Union

import numpy as np

from caphuman.errors import InputError

#: Refuse images with more pixels than this (about 16k x 16k), read from the header.
MAX_PIXELS = 250_000_000
#: Larger images are reduced on decode to at most this many pixels (a face photo needs no more).
WORKING_PIXELS = 40_000_000
#: Default memory a single decode may take (MiB); ``CAPHUMAN_DECODE_BUDGET_MB`` overrides it.
DECODE_BUDGET_MB = 512
#: Decodes above this many bytes hand freed memory back to the system afterwards.
TRIM_AFTER_BYTES = 64 * 1024 * 1024
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
    Alpha (2nd of 2 or 4th of 4 channels) is composited over white. uint8 RGB is returned as is;
    other inputs are converted a band of rows at a time (memory stays near the output's size).
    """
    a = np.asarray(arr)
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"unsupported image array shape {tuple(np.asarray(arr).shape)}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
        raise InputError(f"unsupported image dtype {a.dtype}")
    if a.dtype == np.uint8 and a.shape[2] == 3:
        return a
    if a.dtype == np.uint8 and a.shape[2] == 1:
        return np.repeat(a, 3, axis=2)
    h, w, c = a.shape
    out = np.empty((h, w, 3), np.uint8)
    rows = max(1, (1 << 20) // max(1, w * c))  # about 8 MB of float64 per band
    for r0 in range(0, h, rows):
        out[r0:r0 + rows] = _band_to_rgb_uint8(a[r0:r0 + rows])
    return out


def _band_to_rgb_uint8(a: np.ndarray) -> np.ndarray:
    if np.issubdtype(a.dtype, np.floating):
        if not np.all(np.isfinite(a)):
            raise InputError("image array contains NaN or infinity")
        f = np.clip(a.astype(np.float64), 0.0, 1.0)
    else:
        info = np.iinfo(a.dtype)
        f = np.clip(a.astype(np.float64), 0, None) / float(info.max)
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


def decode_budget() -> int:
    """Bytes one decode may take: ``CAPHUMAN_DECODE_BUDGET_MB`` (MiB) or ``DECODE_BUDGET_MB``."""
    raw = os.environ.get("CAPHUMAN_DECODE_BUDGET_MB", "").strip()
    try:
        mb = float(raw) if raw else DECODE_BUDGET_MB
    except ValueError:
        mb = DECODE_BUDGET_MB
    if not mb > 0:
        mb = DECODE_BUDGET_MB
    return int(mb * 1024 * 1024)


def target_size(width: int, height: int, max_side: int | None) -> tuple[int, int]:
    """The size an image of ``width`` x ``height`` is delivered at: longest side at most
    ``max_side`` and at most ``WORKING_PIXELS`` pixels (aspect ratio kept; never enlarged)."""
    s = 1.0
    if max_side is not None and max(width, height) > max_side:
        s = max_side / max(width, height)
    if width * height * s * s > WORKING_PIXELS:
        s = (WORKING_PIXELS / (width * height)) ** 0.5
    if s >= 1.0:
        return width, height
    return max(1, round(width * s)), max(1, round(height * s))


# Bytes per pixel Pillow holds for a decoded image (RGB is stored with 4 bytes per pixel), and
# what downscaling adds on top: palette/bilevel images are converted first, images with alpha
# are resampled premultiplied (one more full-size copy).
_STORED_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16L": 2, "I;16B": 2, "I;16N": 2}
_SHRINK_EXTRA = {"1": 1, "P": 8, "PA": 8, "LA": 4, "RGBA": 4}


def decode_cost(mode: str, width: int, height: int, shrinks: bool) -> int:
    """Estimated peak bytes to decode (and, when ``shrinks``, downscale) an image."""
    per_pixel = _STORED_BYTES.get(mode, 4) + (_SHRINK_EXTRA.get(mode, 0) if shrinks else 0)
    return per_pixel * width * height


def _shrink(img, size: tuple[int, int]):
    """Downscale a decoded PIL image to ``size`` (integer reduce, then Lanczos)."""
    from PIL import Image

    if img.size == size:
        return img
    if img.mode == "1":
        img = img.convert("L")
    elif img.mode in ("P", "PA"):
        img = img.convert("RGBA" if img.mode == "PA" or "transparency" in img.info else "RGB")
    return img.resize(size, Image.LANCZOS, reducing_gap=3.0)


def _decode_pil(img, name: str, max_side: int | None, owned: bool = True) -> tuple[np.ndarray, int]:
    """A lazily opened PIL image -> (RGB uint8, estimated decode bytes), within the pixel cap and
    the memory budget. ``owned``: opened here from a file (not decoded yet; may be closed here
    once downscaled); a caller's image is only held to the budget while it is still lazy."""
    w, h = img.size
    if w * h > MAX_PIXELS:
        raise InputError(f"{name}: {w}x{h} is too large (more than {MAX_PIXELS:,} pixels)")
    size = target_size(w, h, max_side)
    if size != (w, h) and getattr(img, "format", None) in ("JPEG", "MPO") and hasattr(img, "draft"):
        img.draft(None, size)  # libjpeg decodes at 1/2, 1/4 or 1/8 scale, still at least ``size``
    dw, dh = img.size
    cost = decode_cost(img.mode, dw, dh, shrinks=(dw, dh) != size)
    budget = decode_budget()
    if cost > budget and (owned or getattr(img, "tile", None)):  # a decoded image's memory is spent
        fmt = getattr(img, "format", None) or "image"
        raise InputError(
            f"{name}: {w}x{h} {fmt} would need about {_mb(cost)} MB of memory to decode, over the "
            f"{_mb(budget)} MB limit; downscale it (a face photo needs at most about "
            f"{WORKING_PIXELS // 1_000_000} megapixels, e.g. 7000x5000) or save it as JPEG")
    img.load()
    small = _shrink(img, size)
    if small is not img and owned:
        img.close()
    del img
    return _pil_to_rgb_uint8(small), cost


def _mb(n: int) -> int:
    return int(round(n / (1024 * 1024)))


def _open_stream(fp, name: str, max_side: int | None) -> tuple[np.ndarray, int]:
    from PIL import Image, UnidentifiedImageError

    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                return _decode_pil(img, name, max_side)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{name}: image is too large (more than {MAX_PIXELS:,} pixels)") from None
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (or an unsupported format)") from None
    except MemoryError:
        raise InputError(f"{name}: not enough memory to decode this image; downscale it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name}: cannot decode image ({exc}); the file may be truncated or corrupt") from None
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _open_bytes(data: bytes, name: str, max_side: int | None = None) -> tuple[np.ndarray, int]:
    if len(data) == 0:
        raise InputError(f"{name}: the file is empty")
    return _open_stream(io.BytesIO(data), name, max_side)


def release_memory() -> bool:
    """Hand freed heap memory back to the system (glibc ``malloc_trim``); False where unavailable.

    Large decodes free hundreds of MB that glibc would otherwise keep mapped in the process."""
    global _LIBC
    if _LIBC is None:
        _LIBC = False
        if sys.platform.startswith("linux"):
            try:
                import ctypes

                libc = ctypes.CDLL("libc.so.6")
                libc.malloc_trim.argtypes = [ctypes.c_size_t]
                libc.malloc_trim.restype = ctypes.c_int
                _LIBC = libc
            except (OSError, AttributeError):
                _LIBC = False
    if not _LIBC:
        return False
    _LIBC.malloc_trim(0)
    return True


_LIBC = None


def load_image(source: ImageLike, max_side: int | None = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Read ``source`` (path, bytes, NumPy array or PIL image) as RGB uint8 (H, W, 3).

    ``max_side``: longest side after intake in pixels (downscaled with Lanczos if larger;
    None keeps the size up to ``WORKING_PIXELS``). Raises InputError for missing, empty, truncated
    or non-image files, for images over the pixel cap or the decode memory budget, and for images
    smaller than ``MIN_SIDE``.
    """
    cost = 0
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise InputError(f"{path}: no such file")
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not an image")
        try:
            fh = open(path, "rb")
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror})") from None
        with fh:
            try:
                empty = os.fstat(fh.fileno()).st_size == 0
            except OSError:
                empty = False
            if empty:
                raise InputError(f"{path}: the file is empty")
            rgb, cost = _open_stream(fh, str(path), max_side)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        rgb, cost = _open_bytes(bytes(source), "image", max_side)
    elif isinstance(source, np.ndarray):
        if source.size == 0:
            raise InputError("image array is empty")
        rgb = _array_to_rgb_uint8(source)
    elif hasattr(source, "mode") and hasattr(source, "size") and hasattr(source, "convert"):
        rgb, cost = _decode_pil(source, "image", max_side, owned=False)
    else:
        raise InputError(f"cannot read an image from {type(source).__name__}")
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"image is {w}x{h}; at least {MIN_SIDE} pixels per side are needed")
    if max_side is not None and max(h, w) > max_side:
        rgb = resize_longest(rgb, max_side)
    rgb = np.ascontiguousarray(rgb)
    if cost > TRIM_AFTER_BYTES:
        release_memory()  # the full-size decode is gone; give its pages back
    return rgb


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
    h.update(memoryview(a).cast("B"))  # no copy of the pixels
    return h.hexdigest()
