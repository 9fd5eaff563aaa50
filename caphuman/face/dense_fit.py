"""Fit a head model to MediaPipe's 478 dense points: pose, placement, shape, expression, jaw, eyes.

The points are tied to the model surface by a :class:`~caphuman.face.mesh_embedding.MeshEmbedding`,
so they move through the model's own blendshapes and joints exactly as the renderer moves them.
Unknowns (all in the units of :class:`~caphuman.controls.state.HeadState`):

* placement: scale, shift_x, shift_y (frame NDC, orthographic as :mod:`caphuman.render.camera`);
* pose: yaw, pitch, roll (degrees; the head rotates about its root joint like the renderer's);
* jaw (degrees), gaze eye_yaw / eye_pitch (degrees; the iris points ride on the eyeballs);
* expression: the semantic sliders (smile, brow_raise, brow_furrow, pucker, winks -> eyes_closed)
  plus a residual of the first raw expression coefficients; shape: the first shape coefficients.

Robust least squares (soft-L1 on the point residuals, so outlying points count little), with
priors in the same units so that a neutral face fits neutral: every coefficient is pulled toward 0
(std units), yaw/pitch weakly toward 0. Points whose surface turns away from the camera at the
first estimate (the far cheek, the far eye corner) are dropped in a second pass.
Frame NDC: x right, y up; the frame's shorter side spans [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from caphuman.controls.pose import rotation_from_ypr
from caphuman.controls.state import EXPRESSION_CONTROLS, HeadState, Placement, Pose, RANGES

#: Semantic sliders fitted (mouth_open is the jaw; eyes_closed is recovered from the two winks).
FIT_CONTROLS = ("smile", "brow_raise", "brow_furrow", "pucker", "wink_left", "wink_right")
#: Raw coefficients fitted at most (the rest stay 0).
MAX_SHAPE, MAX_EXPRESSION = 40, 20
#: Prior strengths: residual = strength x sqrt(points) x face height (NDC) x value / unit.
PRIOR = {"shape": 0.02, "expression": 0.006, "control": 0.002, "yaw_pitch": 0.002, "jaw": 0.001, "eyes": 0.0004}
#: Units of the priors: a coefficient's std, 60 degrees of yaw/pitch, 20 of jaw, 30 of gaze.
PRIOR_UNIT = {"yaw_pitch": 60.0, "jaw": 20.0, "eyes": 30.0}
#: soft-L1 scale: residuals beyond this share of the face height count linearly, not squared.
ROBUST_SCALE = 0.03
#: Second pass: drop points whose surface normal points away from the camera (z below this).
MIN_FACING = 0.05


@dataclass
class DenseFitResult:
    """``state``: the fitted head state; ``rms``: rms point error (NDC) over the points used;
    ``points_used``: how many of the 478; ``reprojection``: rms error / face width (a fraction)."""

    state: HeadState
    rms: float
    points_used: int
    reprojection: float
    kind: str = "mesh478"


class DenseFitter:
    """Pre-computed pieces for one head model (reuse it for every photo).

    ``data``: :class:`~caphuman.head.model_data.HeadModelData`; ``framing``: the renderer's
    :class:`~caphuman.render.camera.Framing`; ``directions``: slider name -> (E,) coefficients
    (:class:`~caphuman.controls.expressions.ExpressionSolver`); ``embedding``: the points' places.
    """

    def __init__(self, data, framing, directions: dict[str, np.ndarray], embedding):
        self.data, self.framing, self.embedding = data, framing, embedding
        f = np.asarray(data.f, np.int64)
        tri = f[embedding.faces]  # (478, 3)
        used, inv = np.unique(tri.reshape(-1), return_inverse=True)
        self.tri_local = inv.reshape(-1, 3)
        S, E = int(data.num_shape), int(data.num_expression)
        self.ns, self.ne = min(S, MAX_SHAPE), min(E, MAX_EXPRESSION)
        self.S, self.E = S, E
        sd = np.asarray(data.shapedirs, np.float64)
        Jr = np.asarray(data.J_regressor, np.float64)
        vt = np.asarray(data.v_template, np.float64)
        # Only the vertices of the embedded triangles are posed; the joints are linear in the
        # coefficients (J0 + Jdirs @ coeffs), so the full mesh is never needed.
        self.J0 = Jr @ vt
        self.Jdirs = np.einsum("jv,vck->jck", Jr, sd)
        self.v0 = vt[used]
        self.dirs = sd[used]
        self.posedirs = np.asarray(data.posedirs, np.float64)[used]
        self.has_posedirs = bool(np.any(self.posedirs))
        self.weights = np.asarray(data.weights, np.float64)[used]
        self.parents = np.asarray(data.kintree_table[0], np.int64)
        self.bary = np.asarray(embedding.bary, np.float64)
        self.ctrl_dirs = np.stack([_padded(directions.get(n), E) for n in FIT_CONTROLS], axis=1)  # (E, C)
        self.pivot = np.asarray(framing.pivot, np.float64)
        self.base_scale = float(framing.base_scale)
        self.nc = len(FIT_CONTROLS)
        # parameter layout: [log scale, yaw, pitch, roll, shift_x, shift_y | shape | controls | raw expression | jaw, eye_yaw, eye_pitch]
        self.n_rigid = 6
        self.i_shape = 6
        self.i_ctrl = self.i_shape + self.ns
        self.i_expr = self.i_ctrl + self.nc
        self.i_jaw = self.i_expr + self.ne
        self.n = self.i_jaw + 3
        # d(coefficients)/d(linear parameters) and its product with the blendshapes (constant).
        M = np.zeros((S + E, self.i_jaw - self.i_shape))
        M[np.arange(self.ns), np.arange(self.ns)] = 1.0
        M[S:, self.ns:self.ns + self.nc] = self.ctrl_dirs
        M[S + np.arange(self.ne), self.ns + self.nc + np.arange(self.ne)] = 1.0
        self.dirs_lin = self.dirs @ M  # (n_used, 3, n_lin)
        self.root_lin = self.Jdirs[0] @ M  # (3, n_lin)
        self._last_T = None

    # ------------------------------------------------------------------ model
    def points(self, q: np.ndarray):
        """For parameters ``q``: frame NDC of the 478 points (478, 2), the posed embedded-triangle
        vertices before the global rotation, and the global rotation R (3, 3)."""
        coeffs = np.zeros(self.S + self.E)
        coeffs[: self.ns] = q[self.i_shape:self.i_ctrl]
        expr = self.ctrl_dirs @ q[self.i_ctrl:self.i_expr]
        expr[: self.ne] += q[self.i_expr:self.i_jaw]
        coeffs[self.S:] = expr
        v = self.v0 + self.dirs @ coeffs
        joints = self.J0 + self.Jdirs @ coeffs
        jaw, eye_yaw, eye_pitch = q[self.i_jaw:self.i_jaw + 3]
        r_eye = rotation_from_ypr(eye_yaw, eye_pitch, 0.0)
        rots = np.stack([np.eye(3), np.eye(3), _rx(math.radians(jaw)), r_eye, r_eye])
        if self.has_posedirs:
            v = v + self.posedirs @ (rots[1:] - np.eye(3)).reshape(-1)
        skin = _chain(rots, joints, self.parents)  # (J, 3, 4)
        T = np.einsum("vj,jab->vab", self.weights, skin)
        self._last_T = T
        v = np.einsum("vab,vb->va", T[:, :, :3], v) + T[:, :, 3]
        p = np.einsum("nk,nkc->nc", self.bary, v[self.tri_local])
        # the global rotation about the root joint (what the renderer's joint 0 does)
        R = rotation_from_ypr(q[1], q[2], q[3])
        root = joints[0]
        p = (p - root) @ R.T + root
        a = math.exp(q[0]) * self.base_scale
        ndc = a * (p[:, :2] - self.pivot[:2]) + q[4:6]
        return ndc, v, R

    def jacobian(self, q: np.ndarray) -> np.ndarray:
        """d(ndc)/dq (478, 2, n). The shape / expression parameters enter before skinning, linearly:
        their columns are exact products (with the skinning held at q; only the root joint's shift
        with the shape is followed, the jaw and eye hinges' is neglected, < 1e-3 of the column);
        the rigid, jaw and eye columns are forward differences."""
        ndc, _, R = self.points(q)
        T = self._last_T
        a = math.exp(q[0]) * self.base_scale
        J = np.zeros((len(ndc), 2, self.n))
        lin = np.einsum("vab,vbl->val", T[:, :, :3], self.dirs_lin)  # (n_used, 3, n_lin)
        pk = np.einsum("nk,nkcl->ncl", self.bary, lin[self.tri_local])
        dP = np.einsum("ab,nbl->nal", R, pk - self.root_lin) + self.root_lin
        J[:, :, self.i_shape:self.i_jaw] = a * dP[:, :2]
        for i, h in zip(list(range(6)) + [self.i_jaw, self.i_jaw + 1, self.i_jaw + 2], _STEPS):
            qh = q.copy()
            qh[i] += h
            J[:, :, i] = (self.points(qh)[0] - ndc) / h
        return J

    def facing(self, q: np.ndarray) -> np.ndarray:
        """(478,) z component of each embedded triangle's normal after posing (camera-facing > 0)."""
        _, v, R = self.points(q)
        t = (v @ R.T)[self.tri_local]
        n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
        return n[:, 2] / np.maximum(np.linalg.norm(n, axis=1), 1e-12)

    # ------------------------------------------------------------------ fit
    def fit(self, obs_ndc: np.ndarray, face_width_ndc: float | None = None) -> DenseFitResult:
        """Fit to ``obs_ndc`` (478, 2) frame NDC (x right, y up); ``face_width_ndc`` (the detector
        box's width) normalises the reported reprojection error."""
        from threadpoolctl import threadpool_limits

        # Hundreds of small SVDs (least_squares' trust region): one BLAS thread is fastest; a
        # multi-thread barrier on a busy 2-core machine stalls each one.
        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(obs_ndc, face_width_ndc)

    def _fit(self, obs_ndc, face_width_ndc) -> DenseFitResult:
        from scipy.optimize import least_squares

        obs = np.asarray(obs_ndc, np.float64)
        w = np.where(np.all(np.isfinite(obs), axis=1), self.embedding.weight, 0.0)
        obs = np.nan_to_num(obs)
        face_h = float(np.ptp(obs[w > 0, 1])) if (w > 0).sum() >= 3 else 0.5
        face_h = max(face_h, 1e-3)
        lo, hi = self._bounds()
        q0 = np.clip(self._initial(obs, w), lo + 1e-9, hi - 1e-9)
        prior_w = self._prior_weights()

        def solve(q_start, weights, free, max_nfev):
            sw = np.sqrt(weights)[:, None]
            pw = prior_w[free] * math.sqrt(max(float((weights > 0).sum()), 1.0))

            def full(x):
                q = q_start.copy()
                q[free] = x
                return q

            def fun(x):
                ndc = self.points(full(x))[0]
                return np.concatenate([((ndc - obs) * sw).reshape(-1) / face_h, pw * x])

            def jac(x):
                Jp = (self.jacobian(full(x))[:, :, free] * sw[:, :, None]).reshape(-1, len(free)) / face_h
                return np.concatenate([Jp, np.diag(pw)])

            sol = least_squares(fun, q_start[free], jac=jac, bounds=(lo[free], hi[free]), loss="soft_l1",
                                f_scale=ROBUST_SCALE, x_scale="jac", max_nfev=max_nfev, method="trf")
            q = q_start.copy()
            q[free] = sol.x
            return q, float(sol.cost)

        rigid = np.arange(self.n_rigid)
        everything = np.arange(self.n)
        # 1. rigid, from three starting yaws (a turned face can settle in the mirror pose)
        best = None
        for yaw0 in (0.0, -35.0, 35.0):
            qs = q0.copy()
            qs[1] = yaw0
            q_r, cost = solve(qs, w, rigid, 30)
            if best is None or cost < best[1]:
                best = (q_r, cost)
        # 2. everything; 3. again without the points whose surface turned away from the camera
        q, _ = solve(best[0], w, everything, 30)
        w2 = np.where((self.facing(q) >= MIN_FACING) | (np.arange(len(w)) >= 468), w, 0.0)
        if (w2 > 0).sum() >= 20:
            w = w2
            q, _ = solve(q, w, everything, 30)
        err = np.linalg.norm(self.points(q)[0] - obs, axis=1)
        used = w > 0
        rms = float(np.sqrt(np.average(err[used] ** 2, weights=w[used]))) if used.any() else float("nan")
        width = face_width_ndc if face_width_ndc else float(np.ptp(obs[:468, 0]))
        return DenseFitResult(state=self._state(q), rms=rms, points_used=int(used.sum()),
                              reprojection=rms / max(width, 1e-9))

    # ------------------------------------------------------------------ pieces
    def _initial(self, obs, w) -> np.ndarray:
        """Scale, roll and shift from a 2-D similarity between the frontal template and the points."""
        P = self.embedding.points(self.data.v_template, self.data.f)
        m = w > 0
        src = P[m, :2] - self.pivot[:2]
        dst = obs[m]
        sc, dc = src.mean(0), dst.mean(0)
        s0, d0 = src - sc, dst - dc
        a = math.sqrt((d0 ** 2).sum() / max((s0 ** 2).sum(), 1e-12))
        ang = math.atan2((s0[:, 0] * d0[:, 1] - s0[:, 1] * d0[:, 0]).sum(), (s0 * d0).sum())
        q = np.zeros(self.n)
        q[0] = math.log(max(a / self.base_scale, 1e-6))
        q[3] = -math.degrees(ang)
        q[4:6] = dc - a * sc
        return q

    def _bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.full(self.n, -np.inf), np.full(self.n, np.inf)
        lo[0], hi[0] = math.log(RANGES["scale"][0]), math.log(RANGES["scale"][1])
        for i, name in ((1, "yaw"), (2, "pitch"), (3, "roll")):
            lo[i], hi[i] = RANGES[name]
        c_lo, c_hi = RANGES["coefficient"]
        lo[self.i_shape:self.i_ctrl], hi[self.i_shape:self.i_ctrl] = c_lo, c_hi
        lo[self.i_expr:self.i_jaw], hi[self.i_expr:self.i_jaw] = c_lo, c_hi
        for j, name in enumerate(FIT_CONTROLS):
            lo[self.i_ctrl + j], hi[self.i_ctrl + j] = EXPRESSION_CONTROLS[name][:2]
        for j, name in enumerate(("jaw", "eye_yaw", "eye_pitch")):
            lo[self.i_jaw + j], hi[self.i_jaw + j] = RANGES[name]
        return lo, hi

    def _prior_weights(self) -> np.ndarray:
        p = np.zeros(self.n)
        p[1:3] = PRIOR["yaw_pitch"] / PRIOR_UNIT["yaw_pitch"]
        p[self.i_shape:self.i_ctrl] = PRIOR["shape"]
        p[self.i_ctrl:self.i_expr] = PRIOR["control"]
        p[self.i_expr:self.i_jaw] = PRIOR["expression"]
        p[self.i_jaw] = PRIOR["jaw"] / PRIOR_UNIT["jaw"]
        p[self.i_jaw + 1:] = PRIOR["eyes"] / PRIOR_UNIT["eyes"]
        return p

    def _state(self, q: np.ndarray) -> HeadState:
        from caphuman.render.camera import placement_from_frame_transform

        a = math.exp(q[0]) * self.base_scale
        pl = placement_from_frame_transform(a, q[4] - a * self.pivot[0], q[5] - a * self.pivot[1], self.framing)
        ctrl = {n: float(q[self.i_ctrl + j]) for j, n in enumerate(FIT_CONTROLS)}
        both = min(ctrl["wink_left"], ctrl["wink_right"])
        ctrl["eyes_closed"] = both
        ctrl["wink_left"] -= both
        ctrl["wink_right"] -= both
        ctrl = {k: round(v, 4) for k, v in ctrl.items() if abs(v) >= 0.02}
        clamp = lambda name, v: float(min(max(v, RANGES[name][0]), RANGES[name][1]))  # noqa: E731
        return HeadState(
            shape=[round(float(v), 4) for v in q[self.i_shape:self.i_ctrl]],
            expression=[round(float(v), 4) for v in q[self.i_expr:self.i_jaw]],
            expression_controls=ctrl,
            pose=Pose(yaw=clamp("yaw", q[1]), pitch=clamp("pitch", q[2]), roll=clamp("roll", q[3]),
                      jaw=clamp("jaw", q[self.i_jaw]), eye_yaw=clamp("eye_yaw", q[self.i_jaw + 1]),
                      eye_pitch=clamp("eye_pitch", q[self.i_jaw + 2])),
            placement=Placement(scale=clamp("scale", pl.scale), shift_x=clamp("shift_x", pl.shift_x),
                                shift_y=clamp("shift_y", pl.shift_y)))


#: Forward-difference steps: log scale, yaw, pitch, roll (degrees), shift x, y (NDC), jaw, eye yaw, eye pitch (degrees).
_STEPS = (1e-6, 1e-4, 1e-4, 1e-4, 1e-7, 1e-7, 1e-4, 1e-4, 1e-4)


def _padded(v, n: int) -> np.ndarray:
    out = np.zeros(n)
    if v is not None:
        v = np.asarray(v, np.float64)[:n]
        out[: len(v)] = v
    return out


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def _chain(rots: np.ndarray, joints: np.ndarray, parents: np.ndarray) -> np.ndarray:
    """Skinning transforms (J, 3, 4) mapping rest points to posed points (as :func:`caphuman.head.lbs.rigid_chain`)."""
    J = len(rots)
    world_R = np.zeros((J, 3, 3))
    world_t = np.zeros((J, 3))
    for j in range(J):
        rel = joints[j] - (joints[parents[j]] if j > 0 else 0.0)
        if j == 0:
            world_R[j], world_t[j] = rots[j], rel
        else:
            p = parents[j]
            world_R[j] = world_R[p] @ rots[j]
            world_t[j] = world_R[p] @ rel + world_t[p]
    out = np.zeros((J, 3, 4))
    out[:, :, :3] = world_R
    out[:, :, 3] = world_t - np.einsum("jab,jb->ja", world_R, joints)
    return out
