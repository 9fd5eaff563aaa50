"""The evaluation's numbers, as pure functions (NumPy, float64).

* identity: cosine similarity of two embeddings, in [-1, 1];
* text alignment: ``clip_score = 2.5 * max(cos, 0)`` of CLIP's projected image and text embeddings
  (CLIP-S of Hessel et al. 2021, "CLIPScore", w = 2.5; torchmetrics' CLIPScore is ``100 * max(cos, 0)``,
  i.e. 40 x this one). The paper's 0.8363 is on this scale: a raw ViT-L/14 image-text cosine is about
  0.2-0.35 for a matching pair, never 0.84;
* head control: absolute pose error in degrees per axis, binned by the requested |yaw|; the pose error
  as an axis-angle RMSE (radians, over the 3 components of the global rotation, DECA's pose units);
  expression / lighting coefficient RMSE.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

#: CLIP-S weight (Hessel et al. 2021).
CLIP_S_WEIGHT = 2.5
#: Default |yaw| bin edges in degrees: 0-15, 15-30, 30-45, 45+.
YAW_EDGES = (15.0, 30.0, 45.0)


def cosine(a, b) -> float:
    """Cosine similarity of two vectors (any scale), in [-1, 1]; 0 when either is zero."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings of different sizes: {a.size} and {b.size}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0.0 or nb == 0.0:
        return 0.0
    return float(np.clip(np.dot(a, b) / (na * nb), -1.0, 1.0))


def clip_score(cos: float, weight: float = CLIP_S_WEIGHT) -> float:
    """CLIP-S of a CLIP image-text cosine: ``weight * max(cos, 0)``."""
    return float(weight * max(float(cos), 0.0))


def yaw_bin_labels(edges: Sequence[float] = YAW_EDGES) -> list[str]:
    """``["0-15", "15-30", "30-45", "45+"]`` for edges (15, 30, 45)."""
    e = [0.0, *map(float, edges)]
    return [f"{_g(e[i])}-{_g(e[i + 1])}" for i in range(len(e) - 1)] + [f"{_g(e[-1])}+"]


def yaw_bin(yaw: float, edges: Sequence[float] = YAW_EDGES) -> str:
    """The bin of ``|yaw|`` (degrees): half-open intervals [lo, hi), so 15 falls in 15-30; the last is open."""
    labels = yaw_bin_labels(edges)
    a = abs(float(yaw))
    for label, hi in zip(labels, edges):
        if a < hi:
            return label
    return labels[-1]


def parse_edges(text: str) -> tuple[float, ...]:
    """``"15,30,45"`` -> (15.0, 30.0, 45.0); strictly increasing, positive, finite."""
    from caphuman.errors import InputError

    try:
        edges = tuple(float(t) for t in str(text).split(",") if t.strip())
    except ValueError:
        raise InputError(f"--yaw-bins must be numbers separated by commas, e.g. 15,30,45; got {text!r}") from None
    if not edges or any(not math.isfinite(e) or e <= 0 for e in edges) or any(
            b <= a for a, b in zip(edges, edges[1:])):
        raise InputError(f"--yaw-bins must be increasing positive degrees, e.g. 15,30,45; got {text!r}")
    return edges


def rmse(a, b) -> float:
    """Root mean square difference of two coefficient arrays of the same size."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"cannot compare {a.size} with {b.size} coefficients")
    return float(np.sqrt(np.mean((a - b) ** 2)))


def axis_angle_rmse(requested_ypr: Sequence[float], estimated_ypr: Sequence[float]) -> float:
    """RMSE (radians) between the axis-angle vectors of two yaw/pitch/roll rotations (degrees):
    DECA's pose parameterisation, so comparable in kind with the paper's pose RMSE."""
    from caphuman.controls.pose import axis_angle_from_ypr

    return rmse(axis_angle_from_ypr(*requested_ypr), axis_angle_from_ypr(*estimated_ypr))


def _g(v: float) -> str:
    return f"{v:g}"


def stats(values: Iterable[float | None]) -> dict:
    """``{"count", "mean", "median", "std", "min", "max"}`` of the numbers in ``values`` (None skipped);
    the statistics are None when there is no number."""
    x = np.asarray([float(v) for v in values if v is not None and math.isfinite(float(v))], np.float64)
    if x.size == 0:
        return {"count": 0, "mean": None, "median": None, "std": None, "min": None, "max": None}
    return {"count": int(x.size), "mean": float(x.mean()), "median": float(np.median(x)), "std": float(x.std()),
            "min": float(x.min()), "max": float(x.max())}


__all__ = ["CLIP_S_WEIGHT", "YAW_EDGES", "axis_angle_rmse", "clip_score", "cosine", "parse_edges", "rmse", "stats",
           "yaw_bin", "yaw_bin_labels"]
