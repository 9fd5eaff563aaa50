"""Floating-point tolerances derived from the computation a test checks (shared by the tests).

Two runs of the same float32 computation that differ only in HOW it is evaluated (batch shape, memory
layout, another CPU's SIMD width or BLAS kernel, threads: a different summation order) agree to a few
units of float32 rounding of the values involved, not bit for bit. A tolerance for such a comparison is

    atol = growth * EPS32 * max|reference|

where ``growth`` counts how rounding can accumulate: sequential network passes / solver steps,
amplification by the formula (classifier-free guidance ``eps_u + g (eps_c - eps_u)`` weighs the two
branches' independent errors by ``g`` and ``g - 1``), and long reductions. Independent roundings add in
quadrature (the square root of the number of contributions), as measured across CPUs. Scaling by the
measured magnitude of the reference keeps the bound meaningful whatever the random tiny model's outputs
happen to be; each test states its growth factor next to the call, and the error it must still catch.
Comparisons of one code path with itself in one process stay exact (``torch.equal``): the same kernels on
the same inputs give the same bits.
"""

from __future__ import annotations

import numpy as np

EPS32 = float(np.finfo(np.float32).eps)  # 2**-23 ~ 1.19e-7: one unit of float32 rounding, relative
EPS64 = float(np.finfo(np.float64).eps)  # 2**-52 ~ 2.22e-16

# Rounding of one forward pass of a tiny test network (UNet / ControlNet: ~64 sequential conv, norm,
# attention and activation ops, each rounding to ~1 unit of its output; independent roundings add in
# quadrature, sqrt(64) = 8), with a factor 2 of headroom, in units of EPS32 x the magnitude of the pass's
# output. Measured on a single ControlNet pass whose weights have another memory layout: 2-6.6 units
# (default CPU kernels, ATEN_CPU_CAPABILITY=default/avx2, 1 or 2 threads).
PER_PASS = 16


def guidance_growth(g: float) -> float:
    """Amplification of independent per-branch rounding by ``eps_u + g (eps_c - eps_u)`` =
    ``(1 - g) eps_u + g eps_c``: in quadrature sqrt(g^2 + (g - 1)^2) (9.2 for g = 7; 1 for g = 1)."""
    return float(np.hypot(g, g - 1))


def sampling_growth(steps: int, guidance: float = 1.0) -> float:
    """Budget (in EPS32 x max|ref| units) for a sampling run of ``steps`` network passes at guidance ``g``:
    PER_PASS x guidance_growth(g) x sqrt(steps) (each step's rounding independent). 2 steps at g = 7: ~209."""
    return PER_PASS * guidance_growth(guidance) * float(np.sqrt(steps))


def _as_float64(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def scaled_atol(reference, growth: float, eps: float = EPS32) -> float:
    """``growth * eps * max|reference|``: the rounding budget of a computation whose values reach max|ref|."""
    return float(growth * eps * np.abs(_as_float64(reference)).max())


def assert_close_scaled(actual, reference, growth: float, eps: float = EPS32, what: str = "") -> float:
    """Assert ``max|actual - reference| <= growth * eps * max|reference|``; returns the measured
    error in those units (``max|d| / (eps * max|ref|)``), which the failure message also reports."""
    a, r = _as_float64(actual), _as_float64(reference)
    assert a.shape == r.shape, f"{what}: shape {a.shape} != {r.shape}"
    scale = eps * np.abs(r).max()
    err = float(np.abs(a - r).max())
    units = err / scale if scale > 0 else (0.0 if err == 0 else np.inf)
    assert units <= growth, (
        f"{what}: max|diff| {err:.3g} = {units:.1f} x eps x max|ref| ({scale:.3g}); allowed {growth} "
        f"(atol {growth * scale:.3g})")
    return units
