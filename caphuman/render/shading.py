"""Spherical-harmonics shading exactly as the original renderer (reference §4.5), and a
directional-light helper that produces SH coefficients from azimuth / elevation / intensity.

SH basis order and constants (DECA): [1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1] times
``SH_CONSTANTS``; ``shading[c] = sum_k light[k, c] * SH_CONSTANTS[k] * basis_k(n)``, unclamped.
Normals are world-space, axes x right, y up, z toward the camera.
"""

from __future__ import annotations

import math

import numpy as np

SH_CONSTANTS = np.array([
    1.0 / math.sqrt(4 * math.pi),                                   # 0.28209479
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),               # 1.02332671
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),
    (2 * math.pi / 3) * math.sqrt(3 / (4 * math.pi)),
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),              # 0.85808553
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * 3 * math.sqrt(5 / (12 * math.pi)),
    (math.pi / 4) * (3 / 2) * math.sqrt(5 / (12 * math.pi)),        # 0.42904277
    (math.pi / 4) * (1 / 2) * math.sqrt(5 / (4 * math.pi)),         # 0.24770796
], dtype=np.float64)

# Real SH normalisation constants Y_lm (without the cosine-lobe factors A_l) for the same basis.
_Y_NORM = np.array([
    0.5 * math.sqrt(1 / math.pi),
    math.sqrt(3 / (4 * math.pi)), math.sqrt(3 / (4 * math.pi)), math.sqrt(3 / (4 * math.pi)),
    0.5 * math.sqrt(15 / math.pi), 0.5 * math.sqrt(15 / math.pi), 0.5 * math.sqrt(15 / math.pi),
    0.25 * math.sqrt(15 / math.pi), 0.25 * math.sqrt(5 / math.pi),
])


def sh_basis(normals: np.ndarray) -> np.ndarray:
    """(..., 3) normals -> (..., 9) DECA basis values (without constants)."""
    n = np.asarray(normals, np.float64)
    x, y, z = n[..., 0], n[..., 1], n[..., 2]
    return np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], axis=-1)


def sh_shading(normals: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Shading (..., 3) for normals (..., 3) and SH light (9, 3), as in the original renderer."""
    coeff = np.asarray(light, np.float64) * SH_CONSTANTS[:, None]  # (9, 3)
    return sh_basis(normals) @ coeff


def light_direction(azimuth: float, elevation: float) -> np.ndarray:
    """Unit vector toward the light; azimuth 0 = from the camera (+z), +90 = from the image's
    right (+x); elevation +90 = from above (+y). Degrees."""
    az, el = math.radians(azimuth), math.radians(elevation)
    return np.array([math.cos(el) * math.sin(az), math.sin(el), math.cos(el) * math.cos(az)])


def directional_sh(azimuth: float, elevation: float, intensity: float, ambient: float,
                   color: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> np.ndarray:
    """9x3 SH coefficients for a distant light plus ambient.

    The shading they produce is the order-2 SH approximation of
    ``ambient + intensity * max(0, n . d)`` per colour channel (d from :func:`light_direction`):
    a delta light has radiance coefficients ``L_k = Y_k(d)``; the basis constants already hold the
    cosine-lobe factors A_l except for band 0, which gets its factor pi here.
    """
    d = light_direction(azimuth, elevation)
    radiance = _Y_NORM * sh_basis(d)  # Y_k(d)
    radiance[0] *= math.pi            # the constant band's A_0 = pi is not in SH_CONSTANTS[0]
    sh = intensity * radiance
    sh[0] += ambient / SH_CONSTANTS[0]
    return sh[:, None] * np.asarray(color, np.float64)[None, :]
