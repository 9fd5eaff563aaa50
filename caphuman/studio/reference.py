"""Reference photo -> what the studio keeps per session: the square frame, the fitted head state
and a short report.

Uses the photo-analysis module (:mod:`caphuman.face`) when it is installed; otherwise a plain
centre-square crop and the neutral head, with a warning saying what is missing. Only this module
touches the analysis API.
"""

from __future__ import annotations

from caphuman.studio import has_module
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caphuman.controls.state import HeadState
from caphuman.errors import InputError, NoFaceError

#: Largest accepted upload side after decoding (pixels); larger photos are downscaled.
MAX_SIDE = 4096


@dataclass
class Reference:
    """``frame``: uint8 (S, S, 3) square crop around the face; ``photo``: the decoded upload
    (uint8 RGB); ``state``: the head fitted to it (neutral without analysis); ``detector``: name
    or "none"; ``warnings``: things the user should know; ``analysis``: the analysis object."""

    frame: np.ndarray
    photo: np.ndarray
    state: HeadState
    detector: str = "none"
    warnings: list[str] = field(default_factory=list)
    analysis: Any = None

    def report(self) -> str:
        lines = [f"face detector: {self.detector}"]
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


def analysis_available() -> bool:
    return has_module("caphuman.face") and (
        has_module("caphuman.face.analysis"))


def load_photo(source) -> np.ndarray:
    """Any path/bytes/array/PIL image -> uint8 RGB (H, W, 3), with clear errors."""
    if source is None:
        raise InputError("no image given: upload a reference photo")
    if has_module("caphuman.face.intake"):
        from caphuman.face.intake import load_image

        return load_image(source, max_side=MAX_SIDE)
    return _load_with_pil(source)


def _load_with_pil(source) -> np.ndarray:
    from PIL import Image, ImageOps, UnidentifiedImageError

    if isinstance(source, np.ndarray):
        arr = source
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        if arr.ndim != 3 or arr.shape[2] not in (3, 4) or arr.dtype != np.uint8:
            raise InputError(f"image array must be uint8 (H, W, 3|4), got {arr.dtype} {arr.shape}")
        return np.ascontiguousarray(arr[..., :3])
    if isinstance(source, Image.Image):
        img = source
    else:
        try:
            img = Image.open(source)
            img.load()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            name = getattr(source, "name", None) or (str(source) if isinstance(source, (str, bytes)) and len(str(source)) < 300 else "upload")
            raise InputError(f"cannot read {name!s} as an image ({exc.__class__.__name__}); "
                             "upload a JPEG, PNG or WebP photo") from None
        except Image.DecompressionBombError:
            raise InputError("image is too large to decode safely") from None
    img = ImageOps.exif_transpose(img)
    if img.width < 16 or img.height < 16:
        raise InputError(f"image is too small ({img.width}x{img.height}); at least 16x16 pixels")
    if max(img.size) > MAX_SIDE:
        img.thumbnail((MAX_SIDE, MAX_SIDE))
    if img.mode in ("RGBA", "LA", "P"):
        img = img.convert("RGBA")
        bg = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, img)
    return np.asarray(img.convert("RGB"))


def centre_square(rgb: np.ndarray, size: int) -> np.ndarray:
    """The central square of ``rgb`` resized to ``size`` x ``size`` (area filter)."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    crop = rgb[y0:y0 + s, x0:x0 + s]
    interp = cv2.INTER_AREA if s > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(crop, (size, size), interpolation=interp))


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """A square frame at another size (the preview backdrop follows the render size)."""
    import cv2

    if frame.shape[0] == size and frame.shape[1] == size:
        return frame
    interp = cv2.INTER_AREA if frame.shape[0] > size else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(frame, (size, size), interpolation=interp))


def analyze(source, size: int = 512, pipeline=None) -> Reference:
    """Decode, detect, fit. Raises :class:`InputError` / :class:`NoFaceError` with clear messages."""
    photo = load_photo(source)
    if analysis_available():
        return _with_analysis(photo, size, pipeline)
    frame = centre_square(photo, size)
    return Reference(frame=frame, photo=photo, state=HeadState(), detector="none",
                     warnings=["photo analysis is not installed (caphuman.face): the head was not fitted "
                               "to the photo; the frame is the photo's centre square"])


def _with_analysis(photo: np.ndarray, size: int, pipeline) -> Reference:
    from caphuman.face.analysis import analyze_reference

    result = analyze_reference(photo)
    frame = np.asarray(getattr(result, "frame", None) if getattr(result, "frame", None) is not None
                       else getattr(result, "image"))
    if frame.dtype != np.uint8:
        frame = np.clip(frame, 0, 255).astype(np.uint8)
    state = getattr(result, "state", None) or getattr(result, "head_state", None) or HeadState()
    detector = str(getattr(result, "detector", None) or getattr(result, "detector_name", "unknown"))
    if getattr(result, "face", "present") is None:
        raise NoFaceError("no face found in the photo: use a clear, front-lit photo with one face")
    return Reference(frame=resize_frame(frame, size), photo=photo, state=state, detector=detector,
                     warnings=[str(w) for w in (getattr(result, "warnings", None) or [])], analysis=result)
