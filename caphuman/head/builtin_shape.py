"""Geometry of the built-in open head: a sculpted implicit solid sampled on a (theta, phi) ray grid.

Units: metres. Axes: x toward the head's left, y up, z out of the face. The head surface is found by
casting one ray per grid vertex from an origin on the head's vertical axis and keeping the outermost
crossing of a smooth signed-distance-like function (``head_sdf``). Rows are polar angles theta
(0 = top of the skull), columns azimuths phi = atan2(x, z) (0 = straight ahead, +x positive).
Everything here is deterministic and analytic (no randomness).
"""

from __future__ import annotations

import numpy as np

# ---------------------------------------------------------------------------------- layout (metres)
EYE_CENTRE = np.array([0.0325, 0.027, 0.056])  # left (+x) eyeball centre; the right one is mirrored
EYE_RADIUS = 0.0122
LID_RADIUS = EYE_RADIUS + 0.0006  # the lid skin slides over this sphere
MOUTH_Y = -0.047  # height of the lip line
MOUTH_CORNER_X = 0.0245
RAY_Z = -0.01  # z of the ray origins (head rows)


def _sstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    """Smoothstep from 0 at ``e0`` to 1 at ``e1`` (``e0 > e1`` allowed)."""
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _smin(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth minimum (smooth union) with blend width ``k`` metres."""
    h = np.clip(0.5 + 0.5 * (b - a) / k, 0.0, 1.0)
    return b + (a - b) * h - k * h * (1.0 - h)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Smooth maximum (smooth subtraction / intersection)."""
    return -_smin(-a, -b, k)


def _ellipsoid(p: np.ndarray, c, r) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipsoid (centre ``c``, radii ``r``)."""
    q = (p - np.asarray(c)) / np.asarray(r)
    return (np.sqrt((q * q).sum(-1)) - 1.0) * min(r)


def _capsule(p: np.ndarray, a, b, radius: float) -> np.ndarray:
    """Signed distance to a capsule from ``a`` to ``b``."""
    a = np.asarray(a, float)
    ab = np.asarray(b, float) - a
    t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
    d = p - (a + t[..., None] * ab)
    return np.sqrt((d * d).sum(-1)) - radius


def head_sdf(p: np.ndarray) -> np.ndarray:
    """Signed-distance-like field of the head solid (negative inside), mirror-symmetric in x."""
    q = p.copy()
    q[..., 0] = np.abs(q[..., 0])  # features built on the +x side serve both sides
    x, y, z = q[..., 0], q[..., 1], q[..., 2]

    d = _ellipsoid(q, (0.0, 0.02, -0.016), (0.073, 0.097, 0.097))  # cranium
    d = _smin(d, _ellipsoid(q, (0.0, -0.018, 0.016), (0.061, 0.072, 0.07)), 0.02)  # face mass
    # cheekbones and cheeks
    d = _smin(d, _ellipsoid(q, (0.046, 0.002, 0.052), (0.019, 0.012, 0.02)), 0.012)
    d = _smin(d, _ellipsoid(q, (0.034, -0.03, 0.052), (0.024, 0.026, 0.024)), 0.02)
    # mandible: ramus, body of the jaw, chin
    d = _smin(d, _capsule(q, (0.058, -0.005, -0.012), (0.055, -0.062, -0.018), 0.009), 0.02)
    d = _smin(d, _capsule(q, (0.055, -0.062, -0.018), (0.018, -0.086, 0.066), 0.0095), 0.022)
    d = _smin(d, _ellipsoid(q, (0.0, -0.074, 0.068), (0.024, 0.019, 0.018)), 0.012)
    d = _smin(d, _ellipsoid(q, (0.0, -0.07, 0.02), (0.046, 0.026, 0.05)), 0.02)  # jaw floor
    # maxilla / muzzle under the nose and around the mouth
    d = _smin(d, _ellipsoid(q, (0.0, -0.036, 0.062), (0.033, 0.027, 0.032)), 0.012)
    # lips: upper and lower vermilion meet on the lip line MOUTH_Y
    d = _smin(d, _ellipsoid(q, (0.0, MOUTH_Y + 0.0042, 0.0905), (0.025, 0.0058, 0.0095)), 0.004)
    d = _smin(d, _ellipsoid(q, (0.0, MOUTH_Y - 0.0052, 0.0885), (0.022, 0.0062, 0.0095)), 0.004)
    # brow ridge
    d = _smin(d, _ellipsoid(q, (0.027, 0.043, 0.066), (0.023, 0.0085, 0.014)), 0.01)
    # nose: bridge, tip, alae, columella
    d = _smin(d, _capsule(q, (0.0, 0.03, 0.077), (0.0, -0.006, 0.104), 0.0062), 0.008)
    d = _smin(d, _ellipsoid(q, (0.0, -0.002, 0.086), (0.012, 0.024, 0.016)), 0.006)  # nose body
    d = _smin(d, _ellipsoid(q, (0.0, -0.012, 0.104), (0.0095, 0.0085, 0.0095)), 0.005)
    d = _smin(d, _ellipsoid(q, (0.0125, -0.017, 0.094), (0.0072, 0.0062, 0.0075)), 0.004)
    # neck (a slightly elliptic column, blended under the skull and jaw)
    neck = np.sqrt((x / 0.052) ** 2 + ((z + 0.022) / 0.056) ** 2) * 0.052 - 0.052
    neck = _smax(neck, y + 0.0, 0.02)
    d = _smin(d, neck, 0.025)
    # carve: eye sockets, nostrils, mouth corners, philtrum groove
    d = _smax(d, -_ellipsoid(q, EYE_CENTRE + (0.0, 0.0, 0.021), (0.016, 0.011, 0.0095)), 0.006)
    d = _smax(d, -_ellipsoid(q, (0.0065, -0.0215, 0.099), (0.0032, 0.0022, 0.0035)), 0.0015)
    d = _smax(d, -_ellipsoid(q, (0.0, -0.031, 0.1005), (0.0035, 0.007, 0.003)), 0.002)
    # lid skin lies on a sphere just outside the eyeball
    lid = np.sqrt(((q - EYE_CENTRE) ** 2).sum(-1)) - LID_RADIUS
    d = _smin(d, lid, 0.003)
    return d


# ---------------------------------------------------------------------------------- ray grid
def ray_origin(theta: np.ndarray) -> np.ndarray:
    """Origin of the ray at polar angle ``theta`` (radians): head centre, sliding down the neck."""
    th = np.degrees(theta)
    s = _sstep(118.0, 146.0, th)
    return np.stack([np.zeros_like(th), -0.10 * s, RAY_Z - 0.012 * s], -1)


def ray_direction(theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Unit direction for polar angle ``theta`` from +y and azimuth ``phi`` from +z toward +x."""
    st = np.sin(theta)
    return np.stack([st * np.sin(phi), np.cos(theta), st * np.cos(phi)], -1)


def cast(theta: np.ndarray, phi: np.ndarray, row_theta: np.ndarray | None = None) -> np.ndarray:
    """Outermost surface point of ``head_sdf`` along each ray (origin from ``row_theta``)."""
    theta = np.asarray(theta, float).ravel()
    phi = np.asarray(phi, float).ravel()
    o = ray_origin(theta if row_theta is None else np.asarray(row_theta, float).ravel())
    dvec = ray_direction(theta, phi)
    ts = np.linspace(0.02, 0.27, 211)
    out = np.empty((theta.size, 3))
    for s in range(0, theta.size, 1500):  # chunks bound the memory
        oo, dd = o[s : s + 1500], dvec[s : s + 1500]
        pts = oo[:, None, :] + ts[None, :, None] * dd[:, None, :]
        inside = head_sdf(pts) < 0
        last = inside.shape[1] - 1 - np.argmax(inside[:, ::-1], axis=1)
        lo, hi = ts[last], ts[np.minimum(last + 1, ts.size - 1)]
        for _ in range(22):
            mid = 0.5 * (lo + hi)
            ins = head_sdf(oo + mid[:, None] * dd) < 0
            lo = np.where(ins, mid, lo)
            hi = np.where(ins, hi, mid)
        out[s : s + 1500] = oo + (0.5 * (lo + hi))[:, None] * dd
    return out


def _density_samples(n: int, lo: float, hi: float, density, pinned: dict[int, float] | None = None) -> np.ndarray:
    """``n`` monotone samples in [lo, hi] spaced inversely to ``density``; ``pinned`` index->value."""
    fine = np.linspace(lo, hi, 4001)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (density(fine[1:]) + density(fine[:-1])))])
    cdf /= cdf[-1]
    knots_s, knots_c = [0.0, 1.0], [0.0, 1.0]
    for idx, val in (pinned or {}).items():
        knots_s.append(idx / (n - 1))
        knots_c.append(np.interp(val, fine, cdf))
    order = np.argsort(knots_s)
    s = np.interp(np.linspace(0, 1, n), np.array(knots_s)[order], np.array(knots_c)[order])
    return np.interp(s, cdf, fine)


def eye_slit_theta() -> float:
    """Polar angle of the row through the eye centres (the palpebral slit)."""
    front = EYE_CENTRE + np.array([0.0, 0.0, LID_RADIUS])
    horiz = np.hypot(front[0], front[2] - RAY_Z)
    return float(np.pi / 2 - np.arctan2(front[1], horiz))


def mouth_slit_theta() -> float:
    """Polar angle of the row through the lip line."""
    return float(np.pi / 2 + np.arctan2(-MOUTH_Y, 0.1 - RAY_Z))


def grid_angles(n_rows: int = 76, half_cols: int = 42):
    """Row polar angles (without the pole), column azimuths and the slit row indices.

    Returns ``theta (n_rows,)``, ``phi (2*half_cols,)`` with ``phi[0] = 0`` (front),
    ``phi[half_cols] = pi`` (back), mirror columns ``j`` and ``2*half_cols - j``; and the row
    indices ``(i_eye, i_mouth)``.
    """
    th_lo, th_hi = np.radians(3.5), np.radians(144.0)
    dens_t = lambda t: 1.0 + 1.7 * _sstep(np.radians(45), np.radians(60), t) * _sstep(np.radians(138), np.radians(122), t)
    t_eye, t_mouth = eye_slit_theta(), mouth_slit_theta()
    raw = _density_samples(n_rows, th_lo, th_hi, dens_t)
    i_eye = int(np.argmin(np.abs(raw - t_eye)))
    i_mouth = int(np.argmin(np.abs(raw - t_mouth)))
    theta = _density_samples(n_rows, th_lo, th_hi, dens_t, {i_eye: t_eye, i_mouth: t_mouth})
    dens_p = lambda p: 1.0 + 1.6 * np.exp(-((p / np.radians(55)) ** 2))
    half = _density_samples(half_cols + 1, 0.0, np.pi, dens_p)
    phi = np.concatenate([half, -half[1:-1][::-1]])
    return theta, phi, i_eye, i_mouth


# ---------------------------------------------------------------------------------- small meshes
def uv_sphere(n_rings: int, n_seg: int, alpha_max: float, cap: bool):
    """Points on a unit sphere around +z: front pole + rings up to polar angle ``alpha_max``.

    Returns unit points (P, 3), the polar angle and azimuth of each, and outward triangles.
    With ``cap`` a back pole closes the mesh.
    """
    alphas = np.linspace(0, alpha_max, n_rings + 2)[1:-1] if cap else np.linspace(0, alpha_max, n_rings + 1)[1:]
    betas = np.arange(n_seg) * 2 * np.pi / n_seg
    A, B = np.meshgrid(alphas, betas, indexing="ij")
    pa = np.concatenate([[0.0], A.ravel()] + ([[np.pi]] if cap else []))
    pb = np.concatenate([[0.0], B.ravel()] + ([[0.0]] if cap else []))
    pts = np.stack([np.sin(pa) * np.cos(pb), np.sin(pa) * np.sin(pb), np.cos(pa)], -1)
    ring = lambda k, s: 1 + k * n_seg + (s % n_seg)
    faces = []
    for s in range(n_seg):
        faces.append((0, ring(0, s), ring(0, s + 1)))
        for k in range(n_rings - 1):
            a, b, c, d = ring(k, s), ring(k + 1, s), ring(k, s + 1), ring(k + 1, s + 1)
            faces += [(a, b, d), (a, d, c)]
        if cap:
            faces.append((len(pa) - 1, ring(n_rings - 1, s + 1), ring(n_rings - 1, s)))
    faces = np.array(faces, np.int64)
    # make the winding outward whatever the handedness of (alpha, beta)
    v = pts[faces]
    n = np.cross(v[:, 1] - v[:, 0], v[:, 2] - v[:, 0])
    if (np.einsum("ij,ij->i", n, v.mean(1)) < 0).sum() > len(faces) // 2:
        faces = faces[:, [0, 2, 1]]
    return pts, pa, pb, faces


def ear_points(unit: np.ndarray, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Shape a unit sphere (front pole +z) into a left ear, in head coordinates (metres).

    Local frame: ``a`` out of the ear (toward +x), ``h`` up, ``w`` toward the back of the head.
    The outer face carries a rim (helix) around a cupped concha; the lobe hangs below.
    """
    rho = np.sin(np.minimum(pa, np.pi / 2))
    front = pa < np.pi / 2
    # outline: taller than wide, narrower lobe at the bottom
    h = 0.031 * np.sin(pa) * np.sin(pb)
    w = 0.0175 * np.sin(pa) * np.cos(pb) * (1.0 - 0.25 * (np.sin(pb) < 0) * -np.sin(pb))
    cosa = np.cos(pa)
    rim = np.exp(-(((rho - 0.82) / 0.13) ** 2))
    cup = np.exp(-((rho / 0.45) ** 2))
    a_front = np.sqrt(np.clip(cosa, 0, 1)) * (0.0032 + 0.0042 * rim - 0.0022 * cup)
    a_back = 0.0042 * np.clip(cosa, -1, 0)
    a = np.where(front, a_front, a_back)
    local = np.stack([a, h, w], -1)
    # tilt: the back edge stands off the head by ~20 degrees, the top leans back slightly
    ang = np.radians(22.0)
    rot_y = np.array([[np.cos(ang), 0, -np.sin(ang)], [0, 1, 0], [np.sin(ang), 0, np.cos(ang)]])
    basis = np.array([[1.0, 0, 0], [0, 1, 0], [0, 0, -1]])  # a->+x, h->+y, w->-z
    lean = np.radians(12.0)
    rot_x = np.array([[1, 0, 0], [0, np.cos(lean), np.sin(lean)], [0, -np.sin(lean), np.cos(lean)]])
    world = local @ basis.T @ rot_x.T @ rot_y.T
    return world + np.array([0.0705, 0.006, -0.018])
