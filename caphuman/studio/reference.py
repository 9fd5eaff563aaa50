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
from caphuman.errors import InputError

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


def analyze(source, size: int = 512, target=None) -> Reference:
    """Decode, detect, fit. ``target``: :func:`fit_target` of the active head (None: no fit).
    Raises :class:`InputError` / :class:`NoFaceError` with clear messages."""
    photo = load_photo(source)
    if analysis_available():
        return _with_analysis(photo, size, target)
    frame = centre_square(photo, size)
    return Reference(frame=frame, photo=photo, state=HeadState(), detector="none",
                     warnings=["photo analysis is not installed (caphuman.face): the head was not fitted "
                               "to the photo; the frame is the photo's centre square"])


def fit_target(head_data, kind: str):
    """The analysis module's fit target for the active head model (None without the module)."""
    if not analysis_available():
        return None
    from caphuman.face.analysis import FitTarget

    return FitTarget.from_model_data(head_data, kind)


def _with_analysis(photo: np.ndarray, size: int, target) -> Reference:
    from caphuman.face.analysis import analyze_reference, load_encoders

    encoders = load_encoders(clip=False)  # cached; missing weights are skipped with a warning
    result = analyze_reference(photo, size, target=target, encoders=encoders, what="the reference photo")
    face = result.face
    detector = f"{result.backend} ({len(result.faces)} face{'s' if len(result.faces) != 1 else ''}, fit: {result.fit})"
    del face
    return Reference(frame=resize_frame(np.asarray(result.frame, np.uint8), size), photo=result.image,
                     state=result.reset_state(), detector=detector, warnings=[str(w) for w in result.warnings],
                     analysis=result)
