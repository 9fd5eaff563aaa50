"""The project's own open head model (no FLAME data), built deterministically from analytic shapes.

Run ``python -m caphuman.head.builtin --out assets/head/builtin_head.npz``. The result fills
``HeadModelData`` in FLAME's layout: metres, x toward the head's left, y up, z out of the face,
joints 0 root (neck base), 1 neck (skull base), 2 jaw (hinge), 3 left eye (+x), 4 right eye (-x).

Parts, in vertex order: head surface grid (with a lip slit and two eyelid slits), left eyeball,
right eyeball, left ear, right ear, mouth cavity (inward facing, dark).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from caphuman.head import builtin_shape as shp
from caphuman.head.builtin_rig import (
    albedo_maps,
    dynamic_contour,
    expression_components,
    joint_regressor,
    landmark_vertices,
    shape_components,
    skinning_weights,
)
from caphuman.head.model_data import FLAME_PARENTS, HeadModelData

DEFAULT_OUT = "assets/head/builtin_head.npz"
HEAD_V_TOP = 1.0  # UV chart of the head grid: v from HEAD_V_BOTTOM (neck) to 1 (crown)
HEAD_V_BOTTOM = 0.25
LID_UP_DEG = 3.6  # upper lid retraction above the slit at mid-eye (degrees of theta)
LID_LOW_DEG = 2.5  # lower lid retraction below the slit


@dataclass
class Mesh:
    """Mesh under construction plus the bookkeeping the rig needs (all indices into ``v``)."""

    v: np.ndarray
    f: np.ndarray
    vt: np.ndarray
    ft: np.ndarray
    part: np.ndarray  # per vertex: 0 head, 1 left eye, 2 right eye, 3 ears, 4 mouth cavity
    info: dict


# ---------------------------------------------------------------------------------- head grid
def _lid_profile(phi: np.ndarray, j0: float, j1: float) -> np.ndarray:
    """Almond profile in [0, 1] across the eye between corner azimuths ``j0`` and ``j1``."""
    s = np.clip((phi - j0) / (j1 - j0), 0.0, 1.0)
    return np.sin(np.pi * s) ** 1.2 * (1.0 + 0.15 * np.sin(np.pi * s) * (1 - 2 * s))


def _lid_offsets(theta_rows, phi, rows, cols, side, eyes, up_deg, low_deg, i_eye):
    """Polar-angle offset of each grid vertex that opens the eyelid slits (radians).

    ``side`` is -1 for vertices above the slit (and upper slit copies), +1 below. ``up_deg`` and
    ``low_deg`` are the upper/lower margin offsets at mid-eye (negative ``up_deg`` = upper lid
    pushed below the slit line, used for the closed pose).
    """
    d = np.degrees(theta_rows[rows] - theta_rows[i_eye])
    out = np.zeros(rows.shape)
    for lo, hi in eyes:
        prof = _lid_profile(np.abs(phi[cols]), lo, hi)
        up = np.clip(1 - np.maximum(-d, 0) / 11.0, 0, 1) ** 2
        low = np.clip(1 - np.maximum(d, 0) / 8.0, 0, 1) ** 2
        out += np.where(side < 0, -up_deg * up, low_deg * low) * prof
    return np.radians(out)


def _head_grid() -> Mesh:
    """Cast the head surface on the (theta, phi) grid, cut the slits, triangulate and lay out UVs."""
    theta, phi, i_eye, i_mouth = shp.grid_angles()
    N, M = theta.size, phi.size
    K = M // 2
    R, C = np.meshgrid(np.arange(N), np.arange(M), indexing="ij")
    rows, cols = R.ravel(), C.ravel()
    side = np.sign(rows - i_eye).astype(float)

    # slit columns: mouth around phi = 0, eyes around +-phi_eye
    ecol = lambda ang: int(np.argmin(np.abs(phi[:K + 1] - ang)))
    eye_in = ecol(np.arctan2(0.0205, 0.075))
    eye_out = ecol(np.arctan2(0.0445, 0.066))
    eye_span = (phi[eye_in], phi[eye_out])
    mouth_c = ecol(np.arctan2(shp.MOUTH_CORNER_X, 0.093))
    eye_cols = [j for j in range(eye_in + 1, eye_out)] + [M - j for j in range(eye_in + 1, eye_out)]
    mouth_cols = [j % M for j in range(-mouth_c + 1, mouth_c)]

    # duplicate slit vertices: the copies belong to the faces below the slit
    base_id = lambda i, j: i * M + j
    dup_src, dup_row = [], []
    for j in eye_cols:
        dup_src.append(base_id(i_eye, j)); dup_row.append(i_eye)
    for j in mouth_cols:
        dup_src.append(base_id(i_mouth, j)); dup_row.append(i_mouth)
    dup_src = np.array(dup_src)
    lower_of = {int(s): N * M + k for k, s in enumerate(dup_src)}

    all_rows = np.concatenate([rows, rows[dup_src]])
    all_cols = np.concatenate([cols, cols[dup_src]])
    all_side = np.concatenate([side, np.ones(dup_src.size)])
    all_side[base_id(i_eye, np.array(eye_cols))] = -1.0  # upper copies of the eye slit

    eyes = [eye_span]
    th_open = theta[all_rows] + _lid_offsets(theta, phi, all_rows, all_cols, all_side, eyes, LID_UP_DEG, LID_LOW_DEG, i_eye)
    v = shp.cast(th_open, phi[all_cols], theta[all_rows])
    pole = shp.cast(np.array([0.0]), np.array([0.0]))

    # triangles: mirrored diagonals on the two sides keep the mesh mirror-symmetric
    def vid(i, j, below):
        key = base_id(i, j % M)
        return lower_of.get(key, key) if below else key

    faces, tex = [], []
    u_of = lambda j, right_end: ((j - K) % M if not (right_end and j % M == K) else M) / M
    v_of = lambda i: HEAD_V_TOP - (i + 1) / N * (HEAD_V_TOP - HEAD_V_BOTTOM)
    vt = []
    vt_index = {}

    def t_id(i, j, right_end):
        key = (i, j % M, bool(right_end and j % M == K))
        if key not in vt_index:
            vt_index[key] = len(vt)
            vt.append((u_of(j % M, right_end), v_of(i)))
        return vt_index[key]

    for i in range(N - 1):
        for j in range(M):
            j1 = j + 1
            a, b = vid(i, j, True), vid(i + 1, j, False)
            c, d = vid(i, j1, True), vid(i + 1, j1, False)
            ta, tb = t_id(i, j, False), t_id(i + 1, j, False)
            tc, td = t_id(i, j1, j1 % M == K), t_id(i + 1, j1, j1 % M == K)
            if j < K:
                faces += [(a, b, c), (c, b, d)]
                tex += [(ta, tb, tc), (tc, tb, td)]
            else:
                faces += [(a, b, d), (a, d, c)]
                tex += [(ta, tb, td), (ta, td, tc)]
    pole_id = v.shape[0]
    for j in range(M):
        j1 = j + 1
        vt.append((((j - K) % M + 0.5) / M, HEAD_V_TOP))
        faces.append((pole_id, vid(0, j, False), vid(0, j1, False)))
        tex.append((len(vt) - 1, t_id(0, j, False), t_id(0, j1, j1 % M == K)))
    v = np.vstack([v, pole])
    info = dict(
        theta=theta, phi=phi, i_eye=i_eye, i_mouth=i_mouth, M=M, N=N,
        rows=np.concatenate([all_rows, [-1]]), cols=np.concatenate([all_cols, [0]]),
        side=np.concatenate([all_side, [-1]]), eye_span=eye_span, mouth_c=mouth_c,
        eye_in=eye_in, eye_out=eye_out, eye_cols=eye_cols, mouth_cols=mouth_cols,
        lower_of=lower_of, base_id=base_id,
    )
    # closed-lid and squint poses, for the expression components
    def lids(up, low):
        th = theta[all_rows] + _lid_offsets(theta, phi, all_rows, all_cols, all_side, eyes, up, low, i_eye)
        moved = np.abs(th - th_open) > 1e-12
        out = v[:-1].copy()
        if moved.any():
            out[moved] = shp.cast(th[moved], phi[all_cols][moved], theta[all_rows][moved])
        return np.vstack([out, pole])

    info["lids_closed"] = lids(-LID_LOW_DEG, LID_LOW_DEG)
    info["lids_squint"] = lids(LID_UP_DEG * 0.9, LID_LOW_DEG * 0.35)
    return Mesh(v, np.array(faces, np.int64), np.array(vt, float), np.array(tex, np.int64),
                np.zeros(len(v), np.int64), info)


# ---------------------------------------------------------------------------------- other parts
def _mirror(v: np.ndarray, f: np.ndarray):
    """Mirror points through x = 0 and flip the winding so the normals stay outward."""
    return v * np.array([-1.0, 1.0, 1.0]), f[:, [0, 2, 1]]


def _disc_uv(pa: np.ndarray, pb: np.ndarray, centre, radius: float, alpha_max: float) -> np.ndarray:
    """Azimuthal layout of a sphere-like part in a UV disc (front pole at the centre)."""
    r = radius * np.clip(pa / alpha_max, 0, 1)
    return np.stack([centre[0] + r * np.cos(pb), centre[1] + r * np.sin(pb)], -1)


EYE_UV = ((0.1, 0.12), (0.3, 0.12))  # left, right eyeball disc centres; radius 0.095
EAR_UV = ((0.52, 0.12), (0.74, 0.12))  # ear discs, radius 0.095
CAVITY_UV = (0.93, 0.12)  # dark patch
EYE_ALPHA_MAX = np.radians(150.0)  # eyeball rings every 15 degrees; ring 6 is the equator


def _parts():
    """Eyeballs, ears and the mouth cavity: lists of (points, faces, uv, part id)."""
    out = []
    unit, pa, pb, f = shp.uv_sphere(10, 20, EYE_ALPHA_MAX, cap=False)
    eye_l = shp.EYE_CENTRE + shp.EYE_RADIUS * unit
    uv = _disc_uv(pa, pb, EYE_UV[0], 0.095, EYE_ALPHA_MAX)
    out.append((eye_l, f, uv, 1))
    er, fr = _mirror(eye_l, f)
    uvr = uv + np.array([EYE_UV[1][0] - EYE_UV[0][0], 0.0])
    out.append((er, fr, uvr, 2))

    unit, pa, pb, f = shp.uv_sphere(12, 22, np.pi, cap=True)
    pa_c = pa.copy()
    ear = shp.ear_points(unit, pa_c, pb)
    v0 = ear[f]
    vol = np.einsum("ij,ij->i", v0[:, 0] - ear.mean(0), np.cross(v0[:, 1] - ear.mean(0), v0[:, 2] - ear.mean(0))).sum()
    if vol < 0:
        f = f[:, [0, 2, 1]]
    uv = _disc_uv(np.minimum(pa, np.radians(179)), pb, EAR_UV[0], 0.095, np.pi)
    out.append((ear, f, uv, 3))
    ear_r, f_r = _mirror(ear, f)
    out.append((ear_r, f_r, uv + np.array([EAR_UV[1][0] - EAR_UV[0][0], 0.0]), 3))

    unit, pa, pb, f = shp.uv_sphere(8, 16, np.pi, cap=True)
    cav = np.array([0.0, shp.MOUTH_Y - 0.003, 0.062]) + unit[:, [1, 2, 0]] * np.array([0.021, 0.014, 0.02])
    uv = _disc_uv(pa, pb, CAVITY_UV, 0.03, np.pi)
    out.append((cav, f[:, [0, 2, 1]], uv, 4))  # inward-facing shell
    return out


def _assemble() -> Mesh:
    """Head grid plus the separate parts, with offsets applied to all indices."""
    m = _head_grid()
    vs, fs, vts, fts, parts = [m.v], [m.f], [m.vt], [m.ft], [m.part]
    nv, nt = len(m.v), len(m.vt)
    closed, squint = [m.info["lids_closed"]], [m.info["lids_squint"]]
    for pts, f, uv, pid in _parts():
        vs.append(pts); fs.append(f + nv); vts.append(uv); fts.append(f + nt)
        parts.append(np.full(len(pts), pid)); closed.append(pts); squint.append(pts)
        nv += len(pts); nt += len(uv)
    extra = nv - len(m.v)
    m.info["rows"] = np.concatenate([m.info["rows"], np.full(extra, -1)])
    m.info["side"] = np.concatenate([m.info["side"], np.zeros(extra)])
    m.info["lids_closed"] = np.vstack(closed)
    m.info["lids_squint"] = np.vstack(squint)
    return Mesh(np.vstack(vs), np.vstack(fs), np.vstack(vts), np.vstack(fts), np.concatenate(parts), m.info)


# ---------------------------------------------------------------------------------- public API
def _bary_for_vertices(f: np.ndarray, vids: np.ndarray):
    """A triangle containing each vertex and the one-hot barycentric coordinates picking it."""
    vids = np.asarray(vids)
    first_face = np.full(int(f.max()) + 1, -1, np.int64)
    first_slot = np.zeros(int(f.max()) + 1, np.int64)
    flat = f.ravel()
    order = np.argsort(flat, kind="stable")
    uniq, start = np.unique(flat[order], return_index=True)
    first_face[uniq] = order[start] // 3
    first_slot[uniq] = order[start] % 3
    fidx = first_face[vids.ravel()]
    bary = np.zeros((vids.size, 3), np.float32)
    bary[np.arange(vids.size), first_slot[vids.ravel()]] = 1.0
    return fidx.reshape(vids.shape), bary.reshape(vids.shape + (3,))


def build_builtin_head() -> HeadModelData:
    """Build the built-in head model (deterministic; a few seconds on one CPU core)."""
    m = _assemble()
    v = m.v
    lm = landmark_vertices(m)
    contour = dynamic_contour(m, lm[:17])
    shape = shape_components(m)
    expr = expression_components(m, lm)
    dirs = np.concatenate([shape, expr], axis=2)
    W = skinning_weights(m)
    J = joint_regressor(m)
    albedo, basis = albedo_maps(m)
    full_f, full_b = _bary_for_vertices(m.f, lm)
    dyn_f, dyn_b = _bary_for_vertices(m.f, contour)
    return HeadModelData(
        v_template=v.astype(np.float32),
        f=m.f.astype(np.int64),
        shapedirs=dirs.astype(np.float32),
        num_shape=int(shape.shape[2]),
        posedirs=np.zeros((len(v), 3, 36), np.float32),
        J_regressor=J.astype(np.float32),
        kintree_table=np.array([FLAME_PARENTS, list(range(5))], np.int64),
        weights=W.astype(np.float32),
        vt=np.clip(m.vt, 0.0, 1.0).astype(np.float32),
        ft=m.ft.astype(np.int64),
        albedo_mean=albedo.astype(np.float32),
        albedo_basis=basis.astype(np.float32),
        static_lmk_faces_idx=full_f[17:].copy(),
        static_lmk_bary_coords=full_b[17:].copy(),
        dynamic_lmk_faces_idx=dyn_f,
        dynamic_lmk_bary_coords=dyn_b,
        full_lmk_faces_idx=full_f,
        full_lmk_bary_coords=full_b,
        name="caphuman-builtin-head",
        licence="Apache-2.0 (caphuman project; no FLAME data)",
        source="python -m caphuman.head.builtin",
    ).validate()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Build the built-in open head model (.npz).")
    ap.add_argument("--out", default=DEFAULT_OUT, help=f"output path (default {DEFAULT_OUT})")
    args = ap.parse_args(argv)
    head = build_builtin_head()
    path = head.save_npz(args.out)
    print(f"wrote {path}: {head.num_vertices} vertices, {len(head.f)} faces, "
          f"{head.num_shape} shape + {head.num_expression} expression components")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
