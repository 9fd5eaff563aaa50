"""The person's face on the head, for the server's preview picture (never the hint).

The same recipe as the studio's live head (``demo/static/live_head.js``, textured mode): each
pixel of the head takes the reference photo's colour at the photo coordinate its surface point was
seen at (per-vertex ``uv`` interpolated with the rasteriser's barycentrics), blended toward the
photo's mean skin tone where the photo did not see the surface (``visibility``), then re-lit: times
the current shading, divided by the default light's shading of a front-facing normal (the light
the photo was taken under is already in its pixels).
"""

from __future__ import annotations

import numpy as np

from dataclasses import dataclass

from caphuman.render.rasterizer import Rasterization
from caphuman.render.shading import directional_sh, sh_shading


@dataclass
class FaceTexture:
    """The reference photo as the head's texture: ``photo`` uint8 (Hp, Wp, 3) (the frame the head
    was fitted in), ``uv`` (V, 2) in [0, 1] (u right, v down), ``visibility`` (V,) in [0, 1],
    ``skin`` (3,) RGB in [0, 1] (see :func:`caphuman.studio.live.photo_projection`)."""

    photo: np.ndarray
    uv: np.ndarray
    visibility: np.ndarray
    skin: np.ndarray

    @classmethod
    def from_projection(cls, photo: np.ndarray, projection) -> "FaceTexture":
        return cls(photo, projection.uv, projection.visibility, np.asarray(projection.skin, np.float32))


def default_front_shading() -> np.ndarray:
    """(3,) shading of a normal facing the camera under the default light (the live head's u_shade0)."""
    from caphuman.controls.state import Lighting

    light = Lighting()
    sh = directional_sh(light.azimuth, light.elevation, light.intensity, light.ambient, light.color)
    return sh_shading(np.array([0.0, 0.0, 1.0]), sh)


def sample_bilinear(image: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) image at (u right, v down) in [0, 1] (texel centres at (i + 0.5) / W) -> (N, 3) in [0, 1]."""
    H, W = image.shape[:2]
    x = np.clip(u * W - 0.5, 0.0, W - 1.0)
    y = np.clip(v * H - 0.5, 0.0, H - 1.0)
    x0 = np.minimum(np.floor(x).astype(np.int64), W - 2 if W > 1 else 0)
    y0 = np.minimum(np.floor(y).astype(np.int64), H - 2 if H > 1 else 0)
    x1, y1 = np.minimum(x0 + 1, W - 1), np.minimum(y0 + 1, H - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    img = image[..., :3].astype(np.float32) / 255.0
    top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
    bottom = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def textured_shading(raster: Rasterization, faces: np.ndarray, hint: np.ndarray, light_sh: np.ndarray,
                     photo: np.ndarray, uv: np.ndarray, visibility: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """(3, H, W) linear RGB of the head wearing the photo (0 on the background).

    ``hint`` (9, H, W) gives the per-pixel normals (channels 0-2); ``light_sh`` (9, 3) the current
    light; ``photo`` uint8 (Hp, Wp, 3); ``uv`` (V, 2) and ``visibility`` (V,) from
    :func:`caphuman.studio.live.photo_projection`; ``skin`` (3,) RGB in [0, 1].
    """
    H, W = raster.face_idx.shape
    out = np.zeros((3, H, W), np.float32)
    mask = raster.face_idx >= 0
    if not mask.any():
        return out
    tri = np.asarray(faces, np.int64)[raster.face_idx[mask]]  # (N, 3)
    bary = raster.bary[mask].astype(np.float32)[..., None]  # (N, 3, 1)
    puv = (np.asarray(uv, np.float32)[tri] * bary).sum(1)
    vis = np.clip((np.asarray(visibility, np.float32)[tri] * bary[..., 0]).sum(1), 0.0, 1.0)[:, None]
    tex = np.asarray(skin, np.float32)[None] * (1.0 - vis) + sample_bilinear(photo, puv[:, 0], puv[:, 1]) * vis
    shade = sh_shading(hint[0:3, mask].T.astype(np.float64), light_sh)
    rel = shade / np.maximum(default_front_shading(), 0.05)
    out[:, mask] = np.clip(tex * rel, 0.0, 1.0).T
    return out


__all__ = ["FaceTexture", "default_front_shading", "sample_bilinear", "textured_shading"]
