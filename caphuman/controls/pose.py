"""Yaw / pitch / roll (degrees) <-> rotation matrices and axis-angle vectors.

Axes: x right, y up, z toward the camera (the head's nose points +z at zero pose).
The head rotation is ``R = Ry(yaw) @ Rx(-pitch) @ Rz(-roll)`` (applied to column vectors):

* ``Ry(+yaw)`` swings the nose (+z) toward +x: yaw > 0 turns the nose to the image's right;
* ``Rx(-pitch)`` swings the nose toward +y: pitch > 0 tilts the nose up;
* ``Rz(-roll)`` turns the face clockwise as seen from the camera: roll > 0 is clockwise.

FLAME/DECA store rotations as axis-angle vectors (radians); :func:`axis_angle_from_ypr` and
:func:`ypr_from_axis_angle` convert between the two. NumPy, float64.
"""

from __future__ import annotations

import math

import numpy as np


def _rx(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def _ry(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def _rz(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def rotation_from_ypr(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """3x3 rotation for yaw/pitch/roll in degrees (conventions in the module docstring)."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    return _ry(y) @ _rx(-p) @ _rz(-r)


def ypr_from_rotation(R: np.ndarray) -> tuple[float, float, float]:
    """Inverse of :func:`rotation_from_ypr` (degrees); pitch in [-90, 90]."""
    R = np.asarray(R, dtype=np.float64)
    # R = Ry(y) Rx(q) Rz(w) with q = -pitch, w = -roll:
    # R[1,2] = -sin(q); R[0,2] = sin(y)cos(q); R[2,2] = cos(y)cos(q);
    # R[1,0] = cos(q)sin(w); R[1,1] = cos(q)cos(w).
    q = math.asin(max(-1.0, min(1.0, -R[1, 2])))
    if abs(math.cos(q)) > 1e-6:
        y = math.atan2(R[0, 2], R[2, 2])
        w = math.atan2(R[1, 0], R[1, 1])
    else:  # gimbal lock: put everything into yaw
        w = 0.0
        y = math.atan2(-R[2, 0], R[0, 0])
    return math.degrees(y), -math.degrees(q), -math.degrees(w)


def axis_angle_from_rotation(R: np.ndarray) -> np.ndarray:
    """Axis-angle vector (radians x unit axis) of a rotation matrix."""
    R = np.asarray(R, dtype=np.float64)
    cos = max(-1.0, min(1.0, (np.trace(R) - 1.0) / 2.0))
    angle = math.acos(cos)
    if angle < 1e-8:
        return np.zeros(3)
    if math.pi - angle < 1e-5:  # near 180 degrees: axis from the symmetric part
        axis = np.sqrt(np.maximum((np.diag(R) + 1.0) / 2.0, 0.0))
        i = int(np.argmax(axis))
        for j in range(3):
            if j != i:
                axis[j] = math.copysign(axis[j], R[i, j] + R[j, i])
        return axis / np.linalg.norm(axis) * angle
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2.0 * math.sin(angle))
    return axis * angle


def rotation_from_axis_angle(v: np.ndarray) -> np.ndarray:
    """Rodrigues' formula: 3x3 rotation of an axis-angle vector (radians)."""
    v = np.asarray(v, dtype=np.float64).reshape(3)
    angle = float(np.linalg.norm(v))
    if angle < 1e-12:
        return np.eye(3)
    k = v / angle
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(angle) * K + (1 - math.cos(angle)) * (K @ K)


def axis_angle_from_ypr(yaw: float, pitch: float, roll: float) -> np.ndarray:
    return axis_angle_from_rotation(rotation_from_ypr(yaw, pitch, roll))


def ypr_from_axis_angle(v: np.ndarray) -> tuple[float, float, float]:
    return ypr_from_rotation(rotation_from_axis_angle(v))


def jaw_axis_angle(jaw_degrees: float) -> np.ndarray:
    """Jaw joint rotation: opening (jaw > 0) rotates the chin down/back about the x axis."""
    return np.array([math.radians(jaw_degrees), 0.0, 0.0])


def eye_axis_angle(eye_yaw: float, eye_pitch: float) -> np.ndarray:
    """Eye joint rotation (both eyes): like the head's yaw / pitch, ``Ry(eye_yaw) Rx(-eye_pitch)``,
    so eye_yaw > 0 turns the pupil toward the image's right and eye_pitch > 0 turns it up."""
    return axis_angle_from_ypr(eye_yaw, eye_pitch, 0.0)
