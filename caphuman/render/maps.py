"""The 9-channel CapFace hint and the human-facing preview, from ONE rasterisation.

Hint (9, H, W) float32, exactly as the original renderer produced it (reference §2.2, §4.5):
channels 0-2 world-space vertex normals interpolated with the barycentrics (not renormalised,
x right / y up / z toward the camera, in [-1, 1]); 3-5 albedo RGB sampled from the UV albedo map
(bilinear, zero padding, align_corners=False on ``(2u - 1, -(2v - 1))``); 6-8 albedo x SH shading
(unclamped). Background pixels are exactly 0 in all nine channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from caphuman.render.rasterizer import Rasterization, rasterize
from caphuman.render.shading import SH_CONSTANTS


@njit(cache=True, nogil=True)
def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals: each face adds (v1 - v0) x (v2 - v0); normalised, eps 1e-6."""
    n = np.zeros((vertices.shape[0], 3), np.float64)
    for f in range(faces.shape[0]):
        a, b, c = faces[f, 0], faces[f, 1], faces[f, 2]
        e1x = vertices[b, 0] - vertices[a, 0]
        e1y = vertices[b, 1] - vertices[a, 1]
        e1z = vertices[b, 2] - vertices[a, 2]
        e2x = vertices[c, 0] - vertices[a, 0]
        e2y = vertices[c, 1] - vertices[a, 1]
        e2z = vertices[c, 2] - vertices[a, 2]
        nx = e1y * e2z - e1z * e2y
        ny = e1z * e2x - e1x * e2z
        nz = e1x * e2y - e1y * e2x
        for v in (a, b, c):
            n[v, 0] += nx
            n[v, 1] += ny
            n[v, 2] += nz
    out = np.empty((vertices.shape[0], 3), np.float32)
    for v in range(vertices.shape[0]):
        norm = np.sqrt(n[v, 0] ** 2 + n[v, 1] ** 2 + n[v, 2] ** 2)
        norm = max(norm, 1e-6)
        out[v, 0] = n[v, 0] / norm
        out[v, 1] = n[v, 1] / norm
        out[v, 2] = n[v, 2] / norm
    return out


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(V, 3) unit vertex normals, float32 (see :func:`_vertex_normals`)."""
    return _vertex_normals(np.ascontiguousarray(vertices, np.float64), np.ascontiguousarray(faces, np.int64))


@njit(cache=True, nogil=True)
def _fill_hint(face_idx, bary, faces, ft, normals, vt, tex, sh, out):
    H, W = face_idx.shape
    th, tw = tex.shape[0], tex.shape[1]
    for r in range(H):
        for c in range(W):
            f = face_idx[r, c]
            if f < 0:
                continue
            b0, b1, b2 = bary[r, c, 0], bary[r, c, 1], bary[r, c, 2]
            a, b, d = faces[f, 0], faces[f, 1], faces[f, 2]
            nx = b0 * normals[a, 0] + b1 * normals[b, 0] + b2 * normals[d, 0]
            ny = b0 * normals[a, 1] + b1 * normals[b, 1] + b2 * normals[d, 1]
            nz = b0 * normals[a, 2] + b1 * normals[b, 2] + b2 * normals[d, 2]
            ta, tb, td = ft[f, 0], ft[f, 1], ft[f, 2]
            u = b0 * vt[ta, 0] + b1 * vt[tb, 0] + b2 * vt[td, 0]
            v = b0 * vt[ta, 1] + b1 * vt[tb, 1] + b2 * vt[td, 1]
            # grid_sample(align_corners=False) on grid (2u - 1, -(2v - 1)):
            ix = u * tw - 0.5
            iy = (1.0 - v) * th - 0.5
            x0 = int(np.floor(ix))
            y0 = int(np.floor(iy))
            fx = ix - x0
            fy = iy - y0
            alb0 = 0.0
            alb1 = 0.0
            alb2 = 0.0
            for dy in range(2):
                yy = y0 + dy
                if yy < 0 or yy >= th:
                    continue
                wy = fy if dy == 1 else 1.0 - fy
                for dx in range(2):
                    xx = x0 + dx
                    if xx < 0 or xx >= tw:
                        continue
                    wgt = wy * (fx if dx == 1 else 1.0 - fx)
                    alb0 += wgt * tex[yy, xx, 0]
                    alb1 += wgt * tex[yy, xx, 1]
                    alb2 += wgt * tex[yy, xx, 2]
            b4 = nx * ny
            b5 = nx * nz
            b6 = ny * nz
            b7 = nx * nx - ny * ny
            b8 = 3.0 * nz * nz - 1.0
            s0 = (sh[0, 0] + sh[1, 0] * nx + sh[2, 0] * ny + sh[3, 0] * nz + sh[4, 0] * b4
                  + sh[5, 0] * b5 + sh[6, 0] * b6 + sh[7, 0] * b7 + sh[8, 0] * b8)
            s1 = (sh[0, 1] + sh[1, 1] * nx + sh[2, 1] * ny + sh[3, 1] * nz + sh[4, 1] * b4
                  + sh[5, 1] * b5 + sh[6, 1] * b6 + sh[7, 1] * b7 + sh[8, 1] * b8)
            s2 = (sh[0, 2] + sh[1, 2] * nx + sh[2, 2] * ny + sh[3, 2] * nz + sh[4, 2] * b4
                  + sh[5, 2] * b5 + sh[6, 2] * b6 + sh[7, 2] * b7 + sh[8, 2] * b8)
            out[0, r, c] = nx
            out[1, r, c] = ny
            out[2, r, c] = nz
            out[3, r, c] = alb0
            out[4, r, c] = alb1
            out[5, r, c] = alb2
            out[6, r, c] = alb0 * s0
            out[7, r, c] = alb1 * s1
            out[8, r, c] = alb2 * s2


@dataclass
class RenderedMaps:
    """hint (9, H, W) float32 (normals, albedo, shaded; background 0) and the rasterisation."""

    hint: np.ndarray
    raster: Rasterization

    @property
    def mask(self) -> np.ndarray:
        return self.raster.mask


def render_hint(world_vertices: np.ndarray, ndc_vertices: np.ndarray, faces: np.ndarray,
                uv_faces: np.ndarray, uv: np.ndarray, albedo_map: np.ndarray, sh: np.ndarray,
                height: int, width: int) -> RenderedMaps:
    """Rasterise once and fill the 9-channel hint.

    world_vertices (V, 3): posed model-space vertices (normals come from these);
    ndc_vertices (V, 3): the same vertices in frame NDC; uv (T, 2) and uv_faces (F, 3);
    albedo_map (Ht, Wt, 3) RGB (row 0 = v 1); sh (9, 3) light coefficients (DECA basis).
    """
    raster = rasterize(ndc_vertices, faces, height, width)
    normals = vertex_normals(world_vertices, faces)
    sh_scaled = np.asarray(sh, np.float64) * SH_CONSTANTS[:, None]
    out = np.zeros((9, height, width), np.float32)
    _fill_hint(raster.face_idx, raster.bary, np.ascontiguousarray(faces, np.int64),
               np.ascontiguousarray(uv_faces, np.int64), normals, np.ascontiguousarray(uv, np.float32),
               np.ascontiguousarray(albedo_map, np.float32), sh_scaled, out)
    return RenderedMaps(hint=out, raster=raster)


def hint_to_images(hint: np.ndarray) -> dict[str, np.ndarray]:
    """uint8 RGB pictures of the three condition maps (normals mapped from [-1,1] to [0,1])."""
    mask = np.any(hint != 0, axis=0)
    normals = np.where(mask, (hint[0:3] + 1.0) / 2.0, 0.0)
    to8 = lambda x: (np.clip(x, 0.0, 1.0).transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)  # noqa: E731
    return {"normals": to8(normals), "albedo": to8(hint[3:6]), "shading": to8(hint[6:9])}
