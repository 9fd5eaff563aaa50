"""The picture people look at: the lit head over the dimmed reference photo (or a backdrop)."""

from __future__ import annotations

import numpy as np
from numba import njit

#: Brightness kept from the reference photo behind the head.
PHOTO_DIM = 0.45


def neutral_backdrop(height: int, width: int) -> np.ndarray:
    """A soft vertical grey gradient, uint8 (H, W, 3)."""
    ramp = np.linspace(70, 40, height, dtype=np.float32).astype(np.uint8)[:, None, None]
    return np.ascontiguousarray(np.broadcast_to(ramp, (height, width, 3)))


def compose_preview(shaded: np.ndarray, mask: np.ndarray, backdrop: np.ndarray | None = None,
                    landmarks_px: np.ndarray | None = None, dim: float = PHOTO_DIM) -> np.ndarray:
    """shaded (3, H, W) linear RGB (clipped to [0, 1] here), mask (H, W) bool -> uint8 (H, W, 3).

    The backdrop (uint8 H x W x 3, e.g. the reference frame) is dimmed by ``dim``; landmarks
    (N, 2) as (col, row) pixels are drawn as small dots.
    """
    H, W = mask.shape
    if backdrop is None:
        base = neutral_backdrop(H, W)
        dim = 1.0
    else:
        if backdrop.shape[:2] != (H, W):
            raise ValueError(f"backdrop is {backdrop.shape[:2]}, render is {(H, W)}")
        base = np.ascontiguousarray(backdrop[..., :3], np.uint8)
    img = np.empty((H, W, 3), np.uint8)
    _compose(np.ascontiguousarray(shaded, np.float32), mask, base, np.float32(dim), img)
    if landmarks_px is not None:
        draw_points(img, landmarks_px)
    return img


@njit(cache=True, nogil=True)
def _compose(shaded, mask, base, dim, out):
    H, W = mask.shape
    for r in range(H):
        for c in range(W):
            if mask[r, c]:
                for ch in range(3):
                    v = min(max(shaded[ch, r, c], 0.0), 1.0)
                    out[r, c, ch] = np.uint8(v * 255.0 + 0.5)
            else:
                for ch in range(3):
                    out[r, c, ch] = np.uint8(base[r, c, ch] * dim)


def draw_points(img: np.ndarray, points: np.ndarray, radius: int = 2, color=(80, 255, 120)) -> None:
    """Draw filled square-ish dots in place (points as (col, row) floats)."""
    H, W = img.shape[:2]
    for x, y in np.asarray(points, np.float64):
        if not (np.isfinite(x) and np.isfinite(y)):
            continue
        c, r = int(round(x)), int(round(y))
        r0, r1 = max(r - radius, 0), min(r + radius + 1, H)
        c0, c1 = max(c - radius, 0), min(c + radius + 1, W)
        if r0 < r1 and c0 < c1:
            img[r0:r1, c0:c1] = color


def encode_png(img: np.ndarray, compression: int = 1) -> bytes:
    """Fast PNG encoding of a uint8 RGB image (OpenCV, low compression)."""
    import cv2

    # Level 1 + RLE + SUB filter: ~3 ms at 512^2 (the default filter choice costs ~2x more).
    params = [cv2.IMWRITE_PNG_COMPRESSION, compression, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE,
              cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_SUB]
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img[..., ::-1]), params)
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()
