"""A small, fast synthetic head model for tests (a sphere with landmarks and simple bases).

Not meant to look like a person: it exercises the FLAME-layout loader, skinning, landmarks,
expression fitting and rendering with known, hand-checkable geometry. Deterministic.
"""

from __future__ import annotations

import numpy as np

from caphuman.head.model_data import HeadModelData

RADIUS = 0.1

# Frontal iBUG-68 layout in units of the face half-width (x: head's left = image right, y up).
_LMK2D = np.array(
    [(-0.95 * np.cos(np.pi * t / 16), 0.2 - 1.0 * np.sin(np.pi * t / 16)) for t in range(17)]
    + [(-0.75, 0.52), (-0.6, 0.6), (-0.45, 0.62), (-0.3, 0.6), (-0.15, 0.55)]
    + [(0.15, 0.55), (0.3, 0.6), (0.45, 0.62), (0.6, 0.6), (0.75, 0.52)]
    + [(0.0, 0.4), (0.0, 0.25), (0.0, 0.1), (0.0, -0.05)]
    + [(-0.2, -0.15), (-0.1, -0.17), (0.0, -0.18), (0.1, -0.17), (0.2, -0.15)]
    + [(-0.55, 0.3), (-0.45, 0.36), (-0.33, 0.36), (-0.25, 0.3), (-0.33, 0.25), (-0.45, 0.25)]
    + [(0.25, 0.3), (0.33, 0.36), (0.45, 0.36), (0.55, 0.3), (0.45, 0.25), (0.33, 0.25)]
    + [(-0.35, -0.45), (-0.22, -0.38), (-0.08, -0.35), (0.0, -0.36), (0.08, -0.35), (0.22, -0.38),
       (0.35, -0.45), (0.22, -0.53), (0.08, -0.56), (0.0, -0.57), (-0.08, -0.56), (-0.22, -0.53)]
    + [(-0.3, -0.45), (-0.1, -0.42), (0.0, -0.42), (0.1, -0.42), (0.3, -0.45), (0.1, -0.48),
       (0.0, -0.48), (-0.1, -0.48)]
)
FACE_HALF_WIDTH = 0.07


def _sphere(n_lat: int, n_lon: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    lat = np.linspace(0.0, np.pi, n_lat)  # 0 = top (+y)
    lon = np.linspace(-np.pi, np.pi, n_lon + 1)  # 0 = front (+z)
    verts, uv = [], []
    for i, a in enumerate(lat):
        for j, b in enumerate(lon):
            verts.append((RADIUS * np.sin(a) * np.sin(b), RADIUS * np.cos(a), RADIUS * np.sin(a) * np.cos(b)))
            uv.append((j / n_lon, 1.0 - i / (n_lat - 1)))
    verts = np.asarray(verts, np.float64)
    idx = lambda i, j: i * (n_lon + 1) + j  # noqa: E731
    faces = []
    for i in range(n_lat - 1):
        for j in range(n_lon):
            a, b, c, d = idx(i, j), idx(i, j + 1), idx(i + 1, j), idx(i + 1, j + 1)
            if i > 0:
                faces.append((a, c, b))
            if i < n_lat - 2:
                faces.append((b, c, d))
    faces = np.asarray(faces, np.int64)
    return verts, faces, np.asarray(uv, np.float32), faces.copy()


def _locate(points_xy: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Front-most triangle under each (x, y) and its barycentrics (orthographic along -z)."""
    tri = verts[faces]
    idx, bary = [], []
    for x, y in points_xy:
        best, best_z, best_b = -1, -np.inf, None
        for f in range(len(faces)):
            (x0, y0, z0), (x1, y1, z1), (x2, y2, z2) = tri[f]
            area = (x1 - x0) * (y2 - y0) - (x2 - x0) * (y1 - y0)
            if abs(area) < 1e-15:
                continue
            w0 = ((x1 - x) * (y2 - y) - (x2 - x) * (y1 - y)) / area
            w1 = ((x2 - x) * (y0 - y) - (x0 - x) * (y2 - y)) / area
            w2 = 1 - w0 - w1
            if min(w0, w1, w2) < -1e-9:
                continue
            z = w0 * z0 + w1 * z1 + w2 * z2
            if z > best_z:
                best, best_z, best_b = f, z, (w0, w1, w2)
        idx.append(best)
        bary.append(best_b)
    return np.asarray(idx, np.int64), np.asarray(bary, np.float32)


def _bump(verts: np.ndarray, centre: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-np.sum((verts - centre) ** 2, axis=1) / (2 * sigma**2))


def build_synthetic_head(n_lat: int = 25, n_lon: int = 36) -> HeadModelData:
    verts, faces, vt, ft = _sphere(n_lat, n_lon)
    V = len(verts)
    lm_xy = _LMK2D * FACE_HALF_WIDTH
    lm_faces, lm_bary = _locate(lm_xy, verts, faces)
    lm3 = np.einsum("lk,lkc->lc", lm_bary, verts[faces[lm_faces]])

    # Identity: global stretches + a few bumps (metres per unit coefficient).
    shape = [verts * np.array([0.05, 0, 0]), verts * np.array([0, 0.05, 0]), verts * np.array([0, 0, 0.05])]
    for k, li in enumerate((30, 8, 27, 48, 54, 36, 45)):
        shape.append(_bump(verts, lm3[li], 0.02)[:, None] * verts / RADIUS * 0.003 * (1 + 0.1 * k))
    # Expression: each moves the region named in the list.
    def field(centres, disp, sigma=0.012):
        out = np.zeros_like(verts)
        for c, d in zip(centres, disp):
            out += _bump(verts, lm3[c], sigma)[:, None] * np.asarray(d)
        return out
    up = np.array([0.0, 0.004, 0.0])
    expr = [
        field([48, 54], [(-0.003, 0.004, 0), (0.003, 0.004, 0)]),             # 0 corners up/out
        field(list(range(17, 27)), [up] * 10, 0.01),                           # 1 brows up
        field([37, 38, 43, 44], [(0, -0.003, 0)] * 4, 0.005),                  # 2 upper lids down
        field([21, 22], [(0.003, -0.002, 0), (-0.003, -0.002, 0)], 0.008),     # 3 inner brows in
        field([48, 54, 51, 57], [(0.003, 0, 0.002), (-0.003, 0, 0.002), (0, 0, 0.003), (0, 0, 0.003)]),  # 4
        field([41, 40, 46, 47], [(0, 0.002, 0)] * 4, 0.005),                   # 5 lower lids up
        field([51], [(0, 0.003, 0)]),                                          # 6 upper lip up
        field([57], [(0, -0.003, 0)]),                                         # 7 lower lip down
        field([31, 35], [(-0.002, 0, 0), (0.002, 0, 0)]),                       # 8 nostrils
        field([2, 14], [(-0.003, 0, 0), (0.003, 0, 0)], 0.02),                  # 9 cheeks
        field([48, 54], [(0.0, -0.004, 0), (0.0, -0.004, 0)]),                 # 10 corners down
        field([19, 24], [(0, 0.003, 0), (0, 0.003, 0)]),                       # 11 mid brows
    ]
    shapedirs = np.stack(shape + expr, axis=2).astype(np.float32)

    joint_pos = np.array([[0, -0.12, 0], [0, -0.06, 0], [0, -0.02, 0.02], [0.03, 0.02, 0.07], [-0.03, 0.02, 0.07]])
    J_reg = np.zeros((5, V), np.float32)
    for j, p in enumerate(joint_pos):
        w = _bump(verts, p, 0.03) + 1e-12
        J_reg[j] = w / w.sum()
    weights = np.zeros((V, 5), np.float32)
    jaw = np.clip((-0.03 - verts[:, 1]) / 0.02, 0, 1) * (verts[:, 2] > 0.0)
    weights[:, 2] = jaw
    weights[:, 1] = 1.0 - jaw
    tex = np.empty((8, 8, 3), np.float32)
    tex[:] = (0.8, 0.6, 0.5)
    tex[5:, 3:5] = (0.7, 0.3, 0.3)
    contour = lm_faces[:17]
    return HeadModelData(
        v_template=verts.astype(np.float32), f=faces, shapedirs=shapedirs, num_shape=len(shape),
        posedirs=np.zeros((V, 3, 36), np.float32), J_regressor=J_reg,
        kintree_table=np.array([[-1, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64), weights=weights,
        vt=vt, ft=ft, albedo_mean=tex, albedo_basis=np.zeros((8, 8, 3, 0), np.float32),
        static_lmk_faces_idx=lm_faces[17:], static_lmk_bary_coords=lm_bary[17:],
        dynamic_lmk_faces_idx=np.tile(contour, (79, 1)), dynamic_lmk_bary_coords=np.tile(lm_bary[:17], (79, 1, 1)),
        full_lmk_faces_idx=lm_faces, full_lmk_bary_coords=lm_bary,
        name="synthetic-test-head", licence="Apache-2.0", source="caphuman.testing.synthetic_head",
    ).validate()
