"""Fit a head model to detected 2-D points by least squares (the no-DECA path).

Model (frame NDC, x right, y up): a point X of the model (metres, model space) lands at
``ndc = a * (R (X' - c) + c - pivot)[:2] + (shift_x, shift_y)`` where ``X' = X + B_shape s +
B_expr e``, ``R = rotation_from_ypr(yaw, pitch, roll)`` (degrees), ``c`` the rotation centre (the
model's root joint), ``a = scale * framing.base_scale`` (camera.py). Unknowns by what the
detector gave:

* box only: scale and shift (eye positions assumed inside the box, ``BOX_*``);
* 2 eye points: + roll;
* 5 keypoints or 68 landmarks: + yaw and pitch (weak prior toward 0 degrees);
* 68 landmarks and bases: + shape and expression coefficients (ridge prior, std units).

Lighting stays frontal (the default :class:`Lighting`); jaw stays 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from caphuman.controls.pose import rotation_from_ypr
from caphuman.controls.state import HeadState, Placement, Pose, RANGES

#: iBUG-68 indices whose mean gives each of the 5 SCRFD keypoints (image-left eye is the
#: subject's right eye, iBUG 36-41).
KEYPOINT_TO_68 = ([36, 37, 38, 39, 40, 41], [42, 43, 44, 45, 46, 47], [30], [48], [54])
#: Eye centres (image-left first) as iBUG index groups.
EYES_TO_68 = KEYPOINT_TO_68[:2]
#: Box-only heuristics for OpenCV's Haar frontal-face box: eye line at 0.38 of the box height below
#: its top, eye centres 0.18 of the box width either side of its centre line. Measured where the eye
#: cascade also fires (eye line 0.379-0.388 on all; half gap 0.161 on insightface's t1.jpg, 0.185 on
#: its Tom_Hanks_54745.png, 0.239 on assets/examples/astronaut.jpg, ~0.17 read by hand on
#: grace_hopper.jpg); the median is used (0.24, the astronaut alone, drew heads ~1.3x too large).
BOX_EYES = 0.38
BOX_EYE_HALF_GAP = 0.18


@dataclass
class Observation:
    """Detected 2-D points in frame NDC (y up). ``points``: (N, 2); ``groups``: for each point the
    iBUG-68 indices whose mean it corresponds to; ``box``: (left, bottom, right, top) NDC or None."""

    points: np.ndarray | None = None
    groups: list[list[int]] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    kind: str = "box"


@dataclass
class FitResult:
    """The fitted head state (sliders' start values), which data it used and the rms error
    (NDC units) of the fitted points."""

    state: HeadState
    kind: str
    rms: float


def _clamp(name: str, v: float) -> float:
    lo, hi = RANGES[name]
    return float(min(max(v, lo), hi))


def _group_matrix(groups: list[list[int]]) -> np.ndarray:
    G = np.zeros((len(groups), 68))
    for i, g in enumerate(groups):
        G[i, g] = 1.0 / len(g)
    return G


def fit_landmarks(obs: Observation, template: np.ndarray, framing, center=None,
                  shape_basis: np.ndarray | None = None, expr_basis: np.ndarray | None = None,
                  pose_prior_deg: float = 30.0, coeff_prior: float = 0.02,
                  max_coeffs: int | None = None) -> FitResult:
    """Fit placement, pose and (with 68 landmarks) shape/expression.

    ``template``: the model's 68 3-D landmarks (68, 3) metres at zero shape/expression/pose;
    ``framing``: :class:`caphuman.render.camera.Framing`; ``center``: rotation centre (3,)
    (default: the framing pivot); bases (68, 3, K) in metres per coefficient (None: not fitted);
    ``pose_prior_deg``: std of the yaw/pitch prior; ``coeff_prior``: weight of the coefficient
    ridge prior (NDC units per std); ``max_coeffs``: fit at most this many of each basis.
    """
    from scipy.optimize import least_squares

    T = np.asarray(template, dtype=np.float64)
    pivot = np.asarray(framing.pivot, dtype=np.float64)
    c = pivot if center is None else np.asarray(center, dtype=np.float64)

    if obs.points is None or len(obs.points) < 2:
        return _fit_box(obs, T, framing, c)

    P = np.asarray(obs.points, dtype=np.float64)
    G = _group_matrix(obs.groups)
    full = obs.kind == "landmarks68"
    Bs = np.asarray(shape_basis, np.float64) if (full and shape_basis is not None) else np.zeros((68, 3, 0))
    Be = np.asarray(expr_basis, np.float64) if (full and expr_basis is not None) else np.zeros((68, 3, 0))
    if max_coeffs is not None:
        Bs, Be = Bs[:, :, :max_coeffs], Be[:, :, :max_coeffs]
    ns, ne = Bs.shape[2], Be.shape[2]
    Bs_g = np.einsum("nm,mdk->ndk", G, Bs)
    Be_g = np.einsum("nm,mdk->ndk", G, Be)
    X0 = G @ T
    free_yp = len(P) >= 4

    # Initial guess: 2-D similarity between the frontal projection and the points.
    src = X0[:, :2] - X0[:, :2].mean(0)
    dst = P - P.mean(0)
    a0 = float(np.sqrt((dst ** 2).sum() / max((src ** 2).sum(), 1e-12)))
    ang = np.arctan2((src[:, 0] * dst[:, 1] - src[:, 1] * dst[:, 0]).sum(), (src * dst).sum())
    roll0 = -np.degrees(ang)  # roll > 0 is clockwise in the image (y up: negative angle)

    def unpack(q):
        yaw, pitch = (q[1], q[2]) if free_yp else (0.0, 0.0)
        return q[0], yaw, pitch, q[3], q[4], q[5], q[6:6 + ns], q[6 + ns:6 + ns + ne]

    def project(q):
        a, yaw, pitch, roll, bx, by, s, e = unpack(q)
        X = X0 + (Bs_g @ s if ns else 0.0) + (Be_g @ e if ne else 0.0)
        R = rotation_from_ypr(yaw, pitch, roll)
        Y = (X - c) @ R.T + c - pivot
        return a * Y[:, :2] + np.array([bx, by])

    def residuals(q):
        a, yaw, pitch, *_ = unpack(q)
        r = [(project(q) - P).ravel()]
        if free_yp:
            r.append(np.array([yaw, pitch]) / pose_prior_deg * 0.02)
        if ns + ne:
            r.append(coeff_prior * q[6:])
        return np.concatenate(r)

    # Shift so that the template's pivot-centred projection matches the points' centroid.
    frontal = a0 * (X0[:, :2] - pivot[:2])
    b0 = P.mean(0) - frontal.mean(0)
    q0 = np.concatenate([[a0, 0.0, 0.0, roll0, b0[0], b0[1]], np.zeros(ns + ne)])
    sol = least_squares(residuals, q0, method="lm" if len(residuals(q0)) >= len(q0) else "trf")
    q = sol.x
    a, yaw, pitch, roll, bx, by, s, e = unpack(q)
    rms = float(np.sqrt(np.mean(np.sum((project(q) - P) ** 2, axis=1))))
    from caphuman.render.camera import placement_from_frame_transform

    # frame_transform's shift is for rotation about the pivot; the model rotates about c.
    # ndc = a*R(X-c) + a*(c - pivot) + b: identical to placement's a*(X-pivot)+shift at R = I.
    pl = placement_from_frame_transform(a, bx - a * pivot[0], by - a * pivot[1], framing)
    lo, hi = RANGES["coefficient"]
    state = HeadState(
        shape=[float(v) for v in np.clip(s, lo, hi)], expression=[float(v) for v in np.clip(e, lo, hi)],
        pose=Pose(yaw=_clamp("yaw", yaw), pitch=_clamp("pitch", pitch), roll=_clamp("roll", roll)),
        placement=Placement(scale=_clamp("scale", pl.scale), shift_x=_clamp("shift_x", pl.shift_x),
                            shift_y=_clamp("shift_y", pl.shift_y)))
    return FitResult(state=state, kind=obs.kind, rms=rms)


def _fit_box(obs: Observation, T: np.ndarray, framing, center) -> FitResult:
    """Scale and shift only, from the face box: eye centres are assumed at
    (centre x -+ ``BOX_EYE_HALF_GAP`` x width, top + ``BOX_EYES`` x height) and fitted like
    detected eyes (roll comes out 0)."""
    if obs.box is None:
        raise ValueError("nothing to fit: no points and no box")
    l, b, r, t = obs.box
    cx, y = (l + r) / 2.0, t - BOX_EYES * (t - b)
    dx = BOX_EYE_HALF_GAP * (r - l)
    eyes = Observation(np.array([[cx - dx, y], [cx + dx, y]]), [list(g) for g in EYES_TO_68], obs.box, "eyes")
    res = fit_landmarks(eyes, T, framing, center)
    res.state.pose = Pose()
    return FitResult(state=res.state, kind="box", rms=float("nan"))


def observation_from_face(face, to_ndc) -> Observation:
    """Build an :class:`Observation` from a detected face. ``to_ndc``: photo pixels (N, 2) ->
    frame NDC (N, 2)."""
    l, t, r, b = face.box
    corners = to_ndc(np.array([[l, b], [r, t]], dtype=np.float64))
    box = (float(corners[0, 0]), float(corners[0, 1]), float(corners[1, 0]), float(corners[1, 1]))
    if face.landmarks is not None and len(face.landmarks) == 68:
        return Observation(to_ndc(face.landmarks), [[i] for i in range(68)], box, "landmarks68")
    if face.keypoints is not None and len(face.keypoints) == 5:
        return Observation(to_ndc(face.keypoints), [list(g) for g in KEYPOINT_TO_68], box, "keypoints5")
    if face.keypoints is not None and len(face.keypoints) == 2:
        return Observation(to_ndc(face.keypoints), [list(g) for g in EYES_TO_68], box, "eyes")
    return Observation(None, [], box, "box")
