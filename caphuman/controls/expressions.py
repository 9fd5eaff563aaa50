"""Semantic expression sliders -> expression coefficients of ANY loaded head model.

Each slider is defined once, model-independently, as target displacements of the 68 iBUG
landmarks (in units of the template's outer-eye-corner distance, model axes: x = head's left,
y up, z out of the face). For a given model, the expression coefficients that best produce the
target are found by a regularised, weighted least-squares fit against the model's landmark
expression basis (landmarks are linear in the expression coefficients at zero pose):

    e* = argmin_e  sum_l w_l |B_l e - t_l|^2 + lam |e|^2

Landmarks a slider does not target get target 0 with a smaller weight (the rest of the face stays
still). Slider values scale the solution linearly; ``mouth_open`` drives the jaw joint instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Weight of landmarks a slider does not target (they should stay put).
REST_WEIGHT = 0.25
#: Ridge strength relative to the mean diagonal of the normal matrix.
RIDGE = 1e-3

# iBUG 68 indices. Subject's right = -x (image left), subject's left = +x.
_R_BROW, _L_BROW = list(range(17, 22)), list(range(22, 27))
_UPPER_LIDS = [(37, 41), (38, 40), (43, 47), (44, 46)]  # (upper, lower)


def _targets(landmarks: np.ndarray) -> dict[str, dict[int, np.ndarray]]:
    """Per-slider landmark displacement targets (in inter-ocular units) for value 1."""
    lm = landmarks
    t: dict[str, dict[int, np.ndarray]] = {}
    t["smile"] = {
        48: np.array([-0.07, 0.09, -0.03]), 54: np.array([0.07, 0.09, -0.03]),
        49: np.array([-0.03, 0.04, 0.0]), 53: np.array([0.03, 0.04, 0.0]),
        59: np.array([-0.03, 0.04, 0.0]), 55: np.array([0.03, 0.04, 0.0]),
        60: np.array([-0.06, 0.08, -0.03]), 64: np.array([0.06, 0.08, -0.03]),
    }
    t["brow_raise"] = {i: np.array([0.0, 0.10, 0.0]) for i in _R_BROW + _L_BROW}
    t["brow_furrow"] = {
        21: np.array([0.05, -0.05, 0.0]), 20: np.array([0.03, -0.04, 0.0]), 19: np.array([0.01, -0.02, 0.0]),
        22: np.array([-0.05, -0.05, 0.0]), 23: np.array([-0.03, -0.04, 0.0]), 24: np.array([-0.01, -0.02, 0.0]),
    }
    closed: dict[int, np.ndarray] = {}
    for up, low in _UPPER_LIDS:
        gap = lm[low] - lm[up]
        closed[up] = 0.85 * gap
        closed[low] = -0.15 * gap
    # Targets in inter-ocular units; eyelid gaps are absolute, so convert them below.
    t["eyes_closed"] = {k: v / _iod(lm) for k, v in closed.items()}
    # Winks: one eye closes, the other eye's lids are held where they are (explicit zero targets,
    # full weight). iBUG 42..47 is the head's left eye (+x), 36..41 its right eye.
    left = {k for pair in _UPPER_LIDS[2:] for k in pair}
    right = {k for pair in _UPPER_LIDS[:2] for k in pair}
    for name, shut, still in (("wink_left", left, right), ("wink_right", right, left)):
        t[name] = {k: (t["eyes_closed"][k] if k in shut else np.zeros(3)) for k in sorted(shut | still)}
    centre = (lm[48] + lm[54]) / 2.0
    pucker: dict[int, np.ndarray] = {
        48: np.array([0.10, 0.0, 0.03]), 54: np.array([-0.10, 0.0, 0.03]),
        60: np.array([0.08, 0.0, 0.03]), 64: np.array([-0.08, 0.0, 0.03]),
    }
    for i in (50, 51, 52, 56, 57, 58, 61, 62, 63, 65, 66, 67):
        inward = (centre - lm[i]) / _iod(lm)
        pucker[i] = np.array([0.3 * inward[0], 0.2 * inward[1], 0.06])
    t["pucker"] = pucker
    return t


def _iod(lm: np.ndarray) -> float:
    return float(np.linalg.norm(lm[45] - lm[36]))


@dataclass
class ExpressionSolver:
    """Precomputed slider -> coefficient directions for one head model.

    ``directions[name]`` is the (E,) coefficient vector for slider value 1.
    """

    directions: dict[str, np.ndarray]
    residuals: dict[str, float]

    @classmethod
    def for_model(cls, template_landmarks: np.ndarray, landmark_basis: np.ndarray) -> "ExpressionSolver":
        """template_landmarks (68, 3) metres; landmark_basis (68, 3, E) metres per coefficient."""
        lm = np.asarray(template_landmarks, np.float64)
        basis = np.asarray(landmark_basis, np.float64)
        E = basis.shape[2]
        iod = _iod(lm)
        A = basis.reshape(68 * 3, E)
        directions: dict[str, np.ndarray] = {}
        residuals: dict[str, float] = {}
        for name, targets in _targets(lm).items():
            t = np.zeros((68, 3))
            w = np.full(68, REST_WEIGHT)
            for idx, disp in targets.items():
                t[idx] = disp * iod
                w[idx] = 1.0
            W = np.repeat(w, 3)
            AtW = A.T * W
            N = AtW @ A
            lam = RIDGE * max(float(np.trace(N)) / max(E, 1), 1e-12)
            e = np.linalg.solve(N + lam * np.eye(E), AtW @ t.reshape(-1)) if E else np.zeros(0)
            directions[name] = e
            achieved = (A @ e).reshape(68, 3)
            tgt_idx = list(targets)
            err = np.linalg.norm(achieved[tgt_idx] - t[tgt_idx]) / max(np.linalg.norm(t[tgt_idx]), 1e-12)
            residuals[name] = float(err)
        return cls(directions=directions, residuals=residuals)

    def coefficients(self, controls: dict[str, float], num_expression: int) -> np.ndarray:
        """Sum of slider value x direction (E,); ``mouth_open`` is not an expression (jaw joint)."""
        out = np.zeros(num_expression)
        for name, value in controls.items():
            if name in self.directions and value:
                out += float(value) * self.directions[name]
        return out
