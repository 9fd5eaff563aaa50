"""Rig of the built-in head: landmarks, joints, skinning, shape/expression directions, albedo.

All functions take the assembled mesh (``builtin.Mesh``: vertices in metres, FLAME axes, a
``part`` id per vertex and the head-grid bookkeeping in ``info``) and return plain arrays.
Symmetric fields are written for the +x side and mirrored through ``|x|``.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import map_coordinates

from caphuman.head import builtin_shape as shp

HEAD, EYE_L, EYE_R, EARS, CAVITY = 0, 1, 2, 3, 4
SKIN = np.array([0.80, 0.62, 0.52])

# Expression components, in order (index: name); see expression_components.
EXPRESSION_NAMES = (
    "smile", "frown", "pucker", "upper_lip_raise", "lower_lip_down", "lips_press", "cheek_raise",
    "brow_raise", "brow_furrow", "eyes_close", "squint", "nose_wrinkle", "cheek_puff", "mouth_stretch",
    "eye_close_left", "eye_close_right",
)
SHAPE_NAMES = (
    "head_width", "head_length", "head_height", "face_length", "jaw_width", "chin", "nose_length",
    "nose_width", "nose_projection", "cheekbone_width", "brow_ridge", "eye_spacing", "lip_fullness",
    "ear_size",
)


# ---------------------------------------------------------------------------------- helpers
def _sstep(e0, e1, x):
    return shp._sstep(e0, e1, x)


def _gauss(v: np.ndarray, centre, sigma) -> np.ndarray:
    """Mirror-symmetric Gaussian weight of each vertex around ``centre`` (given on the +x side)."""
    q = v.copy()
    q[:, 0] = np.abs(q[:, 0])
    d = (q - np.asarray(centre, float)) / np.asarray(sigma, float)
    return np.exp(-0.5 * (d * d).sum(1))


def _push(v: np.ndarray, weight: np.ndarray, vec) -> np.ndarray:
    """Displacement ``weight * vec`` with vec given for the +x side (its x mirrored on -x)."""
    vec = np.asarray(vec, float)
    sx = np.sign(v[:, 0])
    d = np.tile(vec, (len(v), 1))
    d[:, 0] *= sx
    return weight[:, None] * d


def _gid(m, i: int, j: int, lower: bool = False) -> int:
    """Vertex id of head-grid row ``i``, column ``j`` (``lower``: the slit copy below the cut)."""
    key = m.info["base_id"](i, j % m.info["M"])
    return m.info["lower_of"].get(key, key) if lower else key


def _front_vertex(m, x: float, y: float, radius: float = 0.0035) -> int:
    """Head-grid vertex near (x, y) in the frontal view that is the most forward (largest z)."""
    v = m.v
    ok = (m.part == HEAD) & (np.hypot(v[:, 0] - x, v[:, 1] - y) < radius) & (v[:, 2] > -0.01)
    cand = np.flatnonzero(ok)
    # prefer the most forward, break ties by closeness, then by id (deterministic)
    score = v[cand, 2] - 0.2 * np.hypot(v[cand, 0] - x, v[cand, 1] - y)
    return int(cand[np.argmax(score)])


def _lower_mouth_weight(m, spread_per_m: float) -> np.ndarray:
    """0 above the lip line, 1 below it; sharp at the slit, widening beyond the mouth corners."""
    info = m.info
    v = m.v
    rows = info["rows"].astype(float)
    r_eff = rows.copy()
    for j in info["mouth_cols"]:
        up = info["base_id"](info["i_mouth"], j)
        r_eff[up] -= 0.5
        r_eff[info["lower_of"][up]] += 0.5
    lateral = np.maximum(np.abs(v[:, 0]) - shp.MOUTH_CORNER_X, 0.0)
    w = 0.5 + spread_per_m * lateral
    out = _sstep(-w, w, r_eff - info["i_mouth"])
    out[m.part != HEAD] = 0.0
    return out


# ---------------------------------------------------------------------------------- landmarks
def landmark_vertices(m) -> np.ndarray:
    """The 68 iBUG landmarks as vertex ids (subject's right = -x comes first in each pair)."""
    info, M = m.info, m.info["M"]
    ie, im = info["i_eye"], info["i_mouth"]
    a, b, c = info["eye_in"], info["eye_out"], info["mouth_c"]
    j1, j2 = a + round((b - a) / 3), a + round(2 * (b - a) / 3)
    lm = np.zeros(68, np.int64)
    # jaw contour 0..8 (-x side down to the chin), 9..16 mirrored
    contour = [(-0.069, 0.018), (-0.069, -0.002), (-0.067, -0.022), (-0.063, -0.041),
               (-0.056, -0.058), (-0.046, -0.072), (-0.034, -0.083), (-0.018, -0.09), (0.0, -0.093)]
    for k, (x, y) in enumerate(contour):
        lm[k] = _front_vertex(m, x, y, 0.004)
        lm[16 - k] = _front_vertex(m, -x, y, 0.004)
    # brows: 17..21 right brow outer->inner (-x), 22..26 left brow inner->outer (+x)
    brow = [(0.013, 0.040), (0.023, 0.045), (0.034, 0.047), (0.045, 0.045), (0.054, 0.040)]
    for k, (x, y) in enumerate(brow):
        lm[22 + k] = _front_vertex(m, x, y)
        lm[21 - k] = _front_vertex(m, -x, y)
    # nose bridge 27..30 (30 = tip), nostril base 31..35
    head = np.flatnonzero(m.part == HEAD)
    tip = head[np.argmax(m.v[head, 2])]
    lm[30] = tip
    ytip = m.v[tip, 1]
    for k, t in enumerate((0.0, 1 / 3, 2 / 3)):
        lm[27 + k] = _front_vertex(m, 0.0, 0.027 + t * (ytip - 0.027))
    nost = [(0.0, -0.0235), (0.0065, -0.0225), (0.0125, -0.0215)]
    lm[33] = _front_vertex(m, *nost[0], 0.003)
    lm[34], lm[32] = _front_vertex(m, *nost[1], 0.003), _front_vertex(m, -nost[1][0], nost[1][1], 0.003)
    lm[35], lm[31] = _front_vertex(m, *nost[2], 0.003), _front_vertex(m, -nost[2][0], nost[2][1], 0.003)
    # eyes: 36..41 right eye (-x): outer, upper x2, inner, lower x2; 42..47 left eye (+x)
    lm[42], lm[43], lm[44], lm[45] = _gid(m, ie, a), _gid(m, ie, j1), _gid(m, ie, j2), _gid(m, ie, b)
    lm[46], lm[47] = _gid(m, ie, j2, True), _gid(m, ie, j1, True)
    lm[39], lm[38], lm[37], lm[36] = _gid(m, ie, M - a), _gid(m, ie, M - j1), _gid(m, ie, M - j2), _gid(m, ie, M - b)
    lm[40], lm[41] = _gid(m, ie, M - j1, True), _gid(m, ie, M - j2, True)
    # lips: outer 48..59, inner 60..67
    v0 = m.v[_gid(m, im, 0)]
    col0 = np.array([_gid(m, i, 0) for i in range(info["N"])])
    up_row = int(np.argmin(np.abs(m.v[col0, 1] - (v0[1] + 0.0095))))
    lo_row = int(np.argmin(np.abs(m.v[col0, 1] - (v0[1] - 0.0105))))
    ja, jb = round(0.62 * c), round(0.3 * c)
    lm[48], lm[54] = _gid(m, im, -c), _gid(m, im, c)
    lm[49], lm[50], lm[51], lm[52], lm[53] = (_gid(m, up_row + 1, -ja), _gid(m, up_row, -jb), _gid(m, up_row, 0),
                                              _gid(m, up_row, jb), _gid(m, up_row + 1, ja))
    lm[55], lm[56], lm[57], lm[58], lm[59] = (_gid(m, lo_row - 1, ja), _gid(m, lo_row, jb), _gid(m, lo_row, 0),
                                              _gid(m, lo_row, -jb), _gid(m, lo_row - 1, -ja))
    jm = round(0.5 * c)
    lm[60], lm[64] = lm[48], lm[54]
    lm[61], lm[62], lm[63] = _gid(m, im, -jm), _gid(m, im, 0), _gid(m, im, jm)
    lm[65], lm[66], lm[67] = _gid(m, im, jm, True), _gid(m, im, 0, True), _gid(m, im, -jm, True)
    return lm


def dynamic_contour(m, static: np.ndarray) -> np.ndarray:
    """(79, 17) vertex ids of the jaw contour per yaw row (0..39 deg, then -1..-39 deg).

    For a turn by ``yaw`` about y (positive = nose toward +x) the contour points on the side that
    turns away slide to the silhouette: the vertex at the same height, in front of the ear, that
    is outermost after the rotation. The chin (8) and the near side keep their static vertices.
    """
    v = m.v
    head = np.flatnonzero((m.part == HEAD) & (v[:, 2] > -0.005) & (v[:, 1] > -0.1))
    out = np.tile(static, (79, 1))
    for row in range(1, 79):
        yaw = row if row < 40 else 39 - row
        a = np.radians(yaw)
        s = 1.0 if yaw > 0 else -1.0
        ks = range(9, 17) if yaw > 0 else range(0, 8)
        for k in ks:
            y = v[static[k], 1]
            cand = head[(np.abs(v[head, 1] - y) < 0.003) & (s * v[head, 0] > 0.004)]
            xr = s * (v[cand, 0] * np.cos(a) + v[cand, 2] * np.sin(a))
            best = cand[np.argmax(xr)]
            # never move behind the static point's own silhouette value
            if s * (v[static[k], 0] * np.cos(a) + v[static[k], 2] * np.sin(a)) < xr.max():
                out[row, k] = best
    return out


# ---------------------------------------------------------------------------------- joints & skinning
def _pair_average(m, target, k: int = 4) -> np.ndarray:
    """Regressor row averaging the ``k`` head vertices nearest (+-x_side, y, z) on each side."""
    row = np.zeros(len(m.v))
    head = np.flatnonzero(m.part == HEAD)
    for s in (1.0, -1.0):
        t = np.array([s * target[0], target[1], target[2]])
        d = np.linalg.norm(m.v[head] - t, axis=1)
        near = head[np.argsort(d, kind="stable")[:k]]
        row[near] += 0.5 / k
    return row


def joint_regressor(m) -> np.ndarray:
    """(5, V) convex rows: root (neck base ring), neck (skull base), jaw (hinge), eyes (centres)."""
    J = np.zeros((5, len(m.v)))
    info = m.info
    bottom = [_gid(m, info["N"] - 1, j) for j in range(info["M"])]
    J[0, bottom] = 1.0 / len(bottom)
    J[1] = _pair_average(m, (0.07, -0.04, -0.03))
    J[2] = _pair_average(m, (0.07, -0.012, -0.004))
    for jid, part in ((3, EYE_L), (4, EYE_R)):
        ids = np.flatnonzero(m.part == part)
        eq = ids[np.abs(m.v[ids, 2] - shp.EYE_CENTRE[2]) < 1e-9]
        J[jid, eq] = 1.0 / len(eq)
    return J


def skinning_weights(m) -> np.ndarray:
    """(V, 5) weights: lower neck -> root, head -> neck, jaw region -> jaw, eyeballs -> eyes."""
    v = m.v
    W = np.zeros((len(v), 5))
    y, z = v[:, 1], v[:, 2]
    root = _sstep(-0.12, -0.16, y)
    jaw = _lower_mouth_weight(m, 420.0) * _sstep(-0.04, -0.008, z) * _sstep(-0.125, -0.098, y)
    jaw = np.minimum(jaw, 1.0 - root)
    cav = m.part == CAVITY
    jaw[cav] = _sstep(shp.MOUTH_Y + 0.002, shp.MOUTH_Y - 0.006, y[cav])
    W[:, 0] = root
    W[:, 2] = jaw
    W[:, 1] = 1.0 - root - jaw
    for jid, part in ((3, EYE_L), (4, EYE_R)):
        sel = m.part == part
        W[sel] = 0.0
        W[sel, jid] = 1.0
    return W


# ---------------------------------------------------------------------------------- shape & expression
def shape_components(m) -> np.ndarray:
    """(V, 3, 14) identity directions, +1 = about one standard deviation (2..5 mm)."""
    v = m.v
    x, y, z = v.T
    ax, sx = np.abs(x), np.sign(x)
    front = _sstep(-0.03, 0.03, z)
    comps = []
    comps.append(_push(v, ax / 0.075, (0.004, 0, 0)))  # head width
    comps.append(_push(v, _sstep(0.02, -0.1, z) * _sstep(-0.15, -0.08, y), (0, 0, -0.005)))  # length
    comps.append(_push(v, _sstep(-0.02, 0.11, y), (0, 0.005, 0)))  # head height
    comps.append(_push(v, _sstep(0.015, -0.09, y) * front * _sstep(-0.15, -0.1, y), (0, -0.0045, 0.0008)))
    comps.append(_push(v, _sstep(0.0, 0.05, ax) * _sstep(-0.02, -0.07, y) * _sstep(-0.05, 0.0, z)
                       * _sstep(-0.14, -0.1, y), (0.004, 0, 0)))  # jaw width
    comps.append(_push(v, _gauss(v, (0, -0.08, 0.075), 0.018), (0, -0.002, 0.003)))  # chin
    comps.append(_push(v, _gauss(v, (0, -0.012, 0.105), 0.013), (0, -0.003, 0.0012)))  # nose length
    comps.append(_push(v, _gauss(v, (0.012, -0.016, 0.094), 0.009), (0.0022, 0, 0)))  # nose width
    comps.append(_push(v, _gauss(v, (0, -0.002, 0.1), (0.011, 0.022, 0.014)), (0, 0, 0.003)))
    comps.append(_push(v, _gauss(v, (0.05, 0.0, 0.05), 0.018), (0.003, 0, 0.001)))  # cheekbones
    comps.append(_push(v, _gauss(v, (0.028, 0.043, 0.07), (0.025, 0.009, 0.014)), (0, 0, 0.0025)))
    dist = np.linalg.norm(np.c_[ax, y, z] - shp.EYE_CENTRE, axis=1)
    comps.append(_push(v, 1.0 - _sstep(0.0145, 0.03, dist), (0.002, 0, 0)))  # eye spacing
    lip = _gauss(v, (0, shp.MOUTH_Y, 0.09), (0.026, 0.011, 0.012))
    tilt = np.tanh((y - shp.MOUTH_Y) / 0.004)
    comps.append(np.c_[np.zeros_like(x), 0.0015 * tilt * lip, 0.002 * lip])  # lip fullness
    ear = (m.part == EARS).astype(float)
    centre = np.array([0.0705, 0.006, -0.018])
    rel = np.c_[ax, y, z] - centre
    rel[:, 0] *= sx
    comps.append(0.12 * ear[:, None] * rel)  # ear size
    return np.stack(comps, axis=2)


def expression_components(m, lm: np.ndarray) -> np.ndarray:
    """(V, 3, 16) expression directions in ``EXPRESSION_NAMES`` order; +1 = moderate.

    The last two close one eye each (the left one is the head's +x side), so winks are possible.

    Mouth components are continuous across the lip slit unless they are meant to part the lips
    (upper lip raise, lower lip down). Eyeballs never move (eye joints rotate them).
    """
    v = m.v
    y = v[:, 1]
    corner = m.v[lm[54]]  # +x mouth corner
    lower = _lower_mouth_weight(m, 420.0)
    upper = (1.0 - lower) * (m.part == HEAD)
    cg = _gauss(v, corner, 0.011)
    lips = _gauss(v, (0, shp.MOUTH_Y, 0.09), (0.024, 0.01, 0.014))
    toward_slit = -np.tanh((y - shp.MOUTH_Y) / 0.004)
    e = []
    e.append(_push(v, cg, (0.003, 0.0045, -0.0015)) + _push(v, _gauss(v, (0.042, -0.02, 0.06), 0.014), (0.0005, 0.0015, 0.001)))
    e.append(_push(v, cg, (0.0005, -0.004, -0.0005)))
    e.append(_push(v, cg, (-0.0055, 0, 0.0015)) + _push(v, lips, (0, 0, 0.004)))
    e.append(_push(v, upper * _gauss(v, (0.008, shp.MOUTH_Y + 0.006, 0.09), (0.016, 0.01, 0.015)), (0, 0.0035, 0.001)))
    e.append(_push(v, lower * _gauss(v, (0.006, shp.MOUTH_Y - 0.007, 0.088), (0.016, 0.011, 0.015)), (0, -0.0045, 0.0008)))
    e.append(np.c_[np.zeros(len(v)), 0.0022 * toward_slit * lips, -0.002 * lips])
    e.append(_push(v, _gauss(v, (0.04, -0.008, 0.062), 0.014), (0.0005, 0.0035, 0.0015)))
    e.append(_push(v, _gauss(v, (0.032, 0.05, 0.07), (0.036, 0.013, 0.03)), (0, 0.005, 0)))
    e.append(_push(v, _gauss(v, (0.012, 0.043, 0.076), (0.012, 0.01, 0.02)), (-0.003, -0.0022, 0.001)))
    e.append(m.info["lids_closed"] - v)
    e.append(m.info["lids_squint"] - v)
    e.append(_push(v, _gauss(v, (0.009, 0.006, 0.095), (0.011, 0.011, 0.02)), (0, 0.002, 0))
             + _push(v, _gauss(v, (0.0125, -0.016, 0.094), 0.008), (0, 0.0018, 0)))
    e.append(_push(v, _gauss(v, (0.045, -0.04, 0.055), 0.015), (0.0042, 0, 0.002)))
    e.append(_push(v, cg, (0.0042, -0.0005, -0.0012)))
    closed = m.info["lids_closed"] - v
    e.append(closed * (v[:, 0] > 0)[:, None])
    e.append(closed * (v[:, 0] < 0)[:, None])
    out = np.stack(e, axis=2)
    out[(m.part == EYE_L) | (m.part == EYE_R)] = 0.0
    return out


# ---------------------------------------------------------------------------------- albedo
def _skin_colour(p: np.ndarray) -> np.ndarray:
    """Albedo (RGB in [0, 1]) of head-surface points ``p`` (N, 3)."""
    x, y, z = np.abs(p[:, 0]), p[:, 1], p[:, 2]
    col = np.tile(SKIN, (len(p), 1))
    cheek = _gauss(p, (0.045, -0.015, 0.06), 0.016)
    col += cheek[:, None] * np.array([0.05, -0.03, -0.02])
    lipd = (x / 0.026) ** 2 + ((y - shp.MOUTH_Y) / np.where(y > shp.MOUTH_Y, 0.0105, 0.012)) ** 2
    lip = _sstep(1.1, 0.75, lipd) * _sstep(0.07, 0.08, z)
    col = col * (1 - lip[:, None]) + lip[:, None] * np.array([0.72, 0.38, 0.38])
    arch = 0.040 + 0.007 * np.sin(np.pi * np.clip((x - 0.01) / 0.046, 0, 1))
    brow = _sstep(0.004, 0.002, np.abs(y - arch)) * _sstep(0.008, 0.014, x) * _sstep(0.058, 0.05, x) * (z > 0.03)
    col = col * (1 - 0.85 * brow[:, None]) + 0.85 * brow[:, None] * np.array([0.28, 0.2, 0.15])
    nostril = _gauss(p, (0.0065, -0.0215, 0.099), 0.0028)
    col *= 1 - 0.55 * nostril[:, None]
    lids = _gauss(p, shp.EYE_CENTRE + (0, 0.004, 0.012), (0.012, 0.006, 0.006))
    col += lids[:, None] * np.array([-0.04, -0.05, -0.03])
    return col


def albedo_maps(m, size: int = 256):
    """UV albedo (size, size, 3) and a 2-component basis (lighter skin, redness), row 0 = v 1."""
    info = m.info
    N, M = info["N"], info["M"]
    K = M // 2
    u = (np.arange(size) + 0.5) / size
    vv = 1.0 - (np.arange(size) + 0.5) / size
    U, Vv = np.meshgrid(u, vv)
    img = np.tile(SKIN, (size, size, 1))
    skin_mask = np.ones((size, size))
    red = np.zeros((size, size))
    # head chart: grid positions in UV column order (c = 0..M, with the seam column repeated)
    cols = (np.arange(M + 1) + K) % M
    grid = m.v[np.array([[info["base_id"](i, j) for j in cols] for i in range(N)])]
    head = Vv >= 0.25
    fi = np.clip((1.0 - Vv[head]) / 0.75 * N - 1.0, 0, N - 1)
    fc = U[head] * M
    p = np.stack([map_coordinates(grid[..., k], [fi, fc], order=1, mode="nearest") for k in range(3)], -1)
    colour = _skin_colour(p)
    img[head] = colour
    red[head] = np.clip(colour[:, 0] - colour[:, 1] - 0.2, 0, 1)
    # eyeball discs: sclera, iris, pupil
    alpha_max = np.radians(150.0)
    for cu, cv in ((0.1, 0.12), (0.3, 0.12)):
        r = np.hypot(U - cu, Vv - cv)
        disc = r < 0.1
        a = r[disc] / 0.095 * alpha_max
        c = np.tile([0.93, 0.91, 0.88], (a.size, 1))
        iris = _sstep(0.49, 0.46, a)
        c = c * (1 - iris[:, None]) + iris[:, None] * np.array([0.36, 0.25, 0.16])
        ring = np.exp(-(((a - 0.46) / 0.03) ** 2))
        c *= 1 - 0.5 * ring[:, None]
        pupil = _sstep(0.2, 0.17, a)
        c = c * (1 - pupil[:, None]) + pupil[:, None] * 0.04
        img[disc] = c
        skin_mask[disc] = 0
    for cu, cv in ((0.52, 0.12), (0.74, 0.12)):
        disc = np.hypot(U - cu, Vv - cv) < 0.1
        img[disc] = SKIN + np.array([0.03, -0.03, -0.02])
    cav = np.hypot(U - 0.93, Vv - 0.12) < 0.05
    img[cav] = (0.3, 0.09, 0.09)
    skin_mask[cav] = 0
    basis = np.zeros((size, size, 3, 2))
    basis[..., 0] = skin_mask[..., None] * np.array([0.08, 0.07, 0.06])
    basis[..., 1] = red[..., None] * np.array([0.3, -0.05, -0.05]) + skin_mask[..., None] * np.array([0.03, -0.01, -0.01])
    return np.clip(img, 0, 1), basis
