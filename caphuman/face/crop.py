"""Square output frame and DECA's 224x224 crop (reference §4.1, §4.4).

Pixel coordinates here are continuous with the original's convention: (x, y) = (column, row),
pixel centres at half-integers, (0, 0) the top-left corner of the image. Frame NDC follows
:mod:`caphuman.render.camera` (x right, y up, [-1, 1] across the square frame).

Output frame (a deliberate change): the original squashes the whole photo to size x size, which
distorts every non-square portrait. Here the frame is the largest square crop of the photo
centred on the chosen face as far as the image borders allow, resized to size x size; its box is
recorded so that generation and preview use the same frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: DECA's crop side in pixels.
DECA_CROP = 224


@dataclass(frozen=True)
class FrameCrop:
    """The square region of the (intake) photo that becomes the output frame.

    ``x0, y0``: top-left corner in photo pixels; ``side``: its side in photo pixels;
    ``size``: the frame's side in output pixels after resizing.
    """

    x0: int
    y0: int
    side: int
    size: int

    @property
    def box(self) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in photo pixels (right/bottom exclusive)."""
        return (self.x0, self.y0, self.x0 + self.side, self.y0 + self.side)

    @property
    def zoom(self) -> float:
        """Output pixels per photo pixel."""
        return self.size / self.side

    def to_frame(self, pts: np.ndarray) -> np.ndarray:
        """Photo pixel coordinates (..., 2) -> frame pixel coordinates (..., 2)."""
        p = np.asarray(pts, dtype=np.float64)
        return (p - np.array([self.x0, self.y0], dtype=np.float64)) * self.zoom

    def to_photo(self, pts: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_frame`."""
        p = np.asarray(pts, dtype=np.float64)
        return p / self.zoom + np.array([self.x0, self.y0], dtype=np.float64)

    def apply(self, rgb: np.ndarray) -> np.ndarray:
        """Cut and resize the photo to the frame (RGB uint8 size x size x 3, Lanczos/area)."""
        from PIL import Image

        tile = rgb[self.y0:self.y0 + self.side, self.x0:self.x0 + self.side]
        if tile.shape[0] == self.size:
            return np.ascontiguousarray(tile)
        return np.asarray(Image.fromarray(tile).resize((self.size, self.size), Image.LANCZOS))

    def to_dict(self) -> dict:
        return {"x0": self.x0, "y0": self.y0, "side": self.side, "size": self.size}


def square_frame(height: int, width: int, face_box: tuple[float, float, float, float] | None,
                 size: int) -> FrameCrop:
    """Largest square inside a height x width photo, centred on ``face_box`` (l, t, r, b pixels)
    as far as the borders allow (centred on the photo when there is no box)."""
    side = int(min(height, width))
    if face_box is None:
        cx, cy = width / 2.0, height / 2.0
    else:
        l, t, r, b = face_box
        cx, cy = (l + r) / 2.0, (t + b) / 2.0
    x0 = int(round(min(max(cx - side / 2.0, 0.0), width - side)))
    y0 = int(round(min(max(cy - side / 2.0, 0.0), height - side)))
    return FrameCrop(x0=x0, y0=y0, side=side, size=int(size))


def box_from_points(points: np.ndarray) -> tuple[float, float, float, float]:
    """(left, top, right, bottom) = min/max of (N, 2) pixel points."""
    p = np.asarray(points, dtype=np.float64)
    return float(p[:, 0].min()), float(p[:, 1].min()), float(p[:, 0].max()), float(p[:, 1].max())


def deca_square(box: tuple[float, float, float, float], from_landmarks: bool = True,
                scale: float = 1.25) -> tuple[float, float, float]:
    """DECA's square crop (centre x, centre y, side) for a face box, in pixels.

    ``from_landmarks`` (DECA's "kpt68" rule, the one CapHuman uses): old_size = mean box side x 1.1,
    centre = box centre. Otherwise DECA's detector-box rule: old_size = mean side (no x 1.1) and the
    centre moved down by 0.12 x old_size. Side = int(old_size x scale).
    """
    left, top, right, bottom = box
    if from_landmarks:
        old = ((right - left) + (bottom - top)) / 2.0 * 1.1
        cx, cy = (left + right) / 2.0, (top + bottom) / 2.0
    else:
        old = ((right - left) + (bottom - top)) / 2.0
        cx, cy = right - (right - left) / 2.0, bottom - (bottom - top) / 2.0 + old * 0.12
    return cx, cy, float(int(old * scale))


def deca_tform(cx: float, cy: float, side: float, crop: int = DECA_CROP) -> np.ndarray:
    """3x3 similarity mapping frame pixel (x, y, 1) -> crop pixel, fitted like the original:
    (cx-s/2, cy-s/2) -> (0, 0), (cx-s/2, cy+s/2) -> (0, crop-1), (cx+s/2, cy-s/2) -> (crop-1, 0)."""
    from skimage.transform import estimate_transform

    h = side / 2.0
    src = np.array([[cx - h, cy - h], [cx - h, cy + h], [cx + h, cy - h]])
    dst = np.array([[0, 0], [0, crop - 1], [crop - 1, 0]], dtype=np.float64)
    return np.asarray(estimate_transform("similarity", src, dst).params, dtype=np.float64)


def deca_crop(frame_rgb: np.ndarray, tform: np.ndarray, crop: int = DECA_CROP) -> np.ndarray:
    """Warp the frame into DECA's input: float32 (crop, crop, 3) in [0, 1], bilinear, 0 outside."""
    from skimage.transform import SimilarityTransform, warp

    img = frame_rgb.astype(np.float64) / 255.0
    out = warp(img, SimilarityTransform(matrix=np.linalg.inv(tform)), output_shape=(crop, crop),
               order=1, mode="constant", cval=0.0)
    return out.astype(np.float32)


def crop_ndc_to_frame_pixels(p: np.ndarray, tform: np.ndarray, crop: int = DECA_CROP) -> np.ndarray:
    """DECA crop-normalised points (..., 2) in [-1, 1] (y down) -> frame pixels (x, y).

    Crop pixel = (p + 1) / 2 x 224 (the original uses 224 although the transform was fitted on
    0..223; kept for parity), then the inverse of ``tform``."""
    p = np.asarray(p, dtype=np.float64)
    uv = (p + 1.0) / 2.0 * crop
    homo = np.concatenate([uv, np.ones(uv.shape[:-1] + (1,))], axis=-1)
    out = homo @ np.linalg.inv(tform).T
    return out[..., :2] / out[..., 2:3]


def frame_pixels_to_ndc(px: np.ndarray, size: int) -> np.ndarray:
    """Frame pixels (original continuous convention, y down) -> frame NDC (y up)."""
    p = np.asarray(px, dtype=np.float64)
    return np.stack([p[..., 0] / size * 2.0 - 1.0, 1.0 - p[..., 1] / size * 2.0], axis=-1)


def ndc_to_frame_pixels(ndc: np.ndarray, size: int) -> np.ndarray:
    """Inverse of :func:`frame_pixels_to_ndc`."""
    q = np.asarray(ndc, dtype=np.float64)
    return np.stack([(q[..., 0] + 1.0) * size / 2.0, (1.0 - q[..., 1]) * size / 2.0], axis=-1)
