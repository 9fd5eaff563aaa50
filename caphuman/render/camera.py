"""Orthographic camera: head-model space -> the output frame's normalised coordinates (NDC).

Frame NDC: x right, y up, z toward the camera; the frame's *shorter* side spans [-1, 1] (for a
square frame both do). For an H x W image with m = min(H, W), pixel column i has its centre at
``x = (-1 + (2i + 1) / W) * W / m`` and row j at ``y = (1 - (2j + 1) / H) * H / m`` (row 0 is the
top). This is the pixel-centre rule of the original renderer (reference §4.5) with y flipped to
point up.

Projection of a posed vertex v (metres): ``ndc = a * (v - pivot) + (shift_x, shift_y, 0)`` with
``a = placement.scale * framing.base_scale``. ``pivot`` and ``base_scale`` (the *framing*) belong
to the head model: at scale 1 and zero shift the face is centred and its brow-to-chin height is
``FACE_HEIGHT_NDC`` of the frame's NDC height.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caphuman.controls.state import Placement

#: Brow-to-chin height of the face at scale 1, in NDC units (the frame is 2 units tall).
FACE_HEIGHT_NDC = 0.8


@dataclass(frozen=True)
class Framing:
    """Default portrait framing of one head model: pivot (metres, model space) and NDC/metre."""

    pivot: tuple[float, float, float]
    base_scale: float

    @classmethod
    def from_landmarks(cls, landmarks: np.ndarray) -> "Framing":
        """Framing from the template's 68 landmarks (68, 3): centre of their box, brow-to-chin fit."""
        lm = np.asarray(landmarks, dtype=np.float64)
        lo, hi = lm.min(axis=0), lm.max(axis=0)
        pivot = (lo + hi) / 2.0
        height = float(hi[1] - lo[1])
        if not np.isfinite(height) or height <= 0:
            from caphuman.errors import InputError

            raise InputError("the head model's landmarks have no vertical extent (a degenerate or damaged model)")
        return cls(pivot=tuple(float(v) for v in pivot), base_scale=FACE_HEIGHT_NDC / height)


def frame_transform(placement: Placement, framing: Framing) -> tuple[float, float, float]:
    """(a, bx, by) with ``ndc_x = a*x + bx`` and ``ndc_y = a*y + by`` for model-space x, y."""
    a = placement.scale * framing.base_scale
    px, py, _ = framing.pivot
    return a, placement.shift_x - a * px, placement.shift_y - a * py


def placement_from_frame_transform(a: float, bx: float, by: float, framing: Framing) -> Placement:
    """Inverse of :func:`frame_transform` (e.g. to turn a DECA camera + crop into sliders)."""
    px, py, _ = framing.pivot
    return Placement(scale=a / framing.base_scale, shift_x=bx + a * px, shift_y=by + a * py)


def project(vertices: np.ndarray, placement: Placement, framing: Framing) -> np.ndarray:
    """Model-space points (..., 3) -> frame NDC (..., 3); z is scaled like x and y (toward camera)."""
    v = np.asarray(vertices, dtype=np.float32)
    a, bx, by = frame_transform(placement, framing)
    out = v * np.float32(a)
    out[..., 0] += bx
    out[..., 1] += by
    out[..., 2] -= a * framing.pivot[2]
    return out


def ndc_to_pixels(xy: np.ndarray, height: int, width: int) -> np.ndarray:
    """Frame NDC (..., 2) -> continuous pixel coordinates (col, row); pixel centres at integers."""
    xy = np.asarray(xy, dtype=np.float64)
    m = min(height, width)
    col = (xy[..., 0] * m / width + 1.0) * width / 2.0 - 0.5
    row = (1.0 - xy[..., 1] * m / height) * height / 2.0 - 0.5
    return np.stack([col, row], axis=-1)


def pixels_to_ndc(colrow: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`ndc_to_pixels`."""
    cr = np.asarray(colrow, dtype=np.float64)
    m = min(height, width)
    x = ((cr[..., 0] + 0.5) * 2.0 / width - 1.0) * width / m
    y = (1.0 - (cr[..., 1] + 0.5) * 2.0 / height) * height / m
    return np.stack([x, y], axis=-1)
