"""Pose-photo transfer: copy chosen fields of a second photo's fitted head state (reference §1.4).

Modes are a list (not the original's substring test on one string): ``position`` (placement:
scale and shift, i.e. DECA's tform + cam), ``pose`` (yaw, pitch, roll), ``expression``
(expression coefficients, expression sliders and the jaw), ``lighting``; ``all`` = all four.
Always kept from the reference: shape and albedo (identity), and the reference's frame.
"""

from __future__ import annotations

import copy
from typing import Iterable

from caphuman.controls.state import HeadState
from caphuman.errors import InputError

MODES = ("position", "pose", "expression", "lighting")


def parse_modes(modes: str | Iterable[str] | None) -> list[str]:
    """"position,pose" or ["position", "pose"] -> validated list in canonical order."""
    if modes is None:
        return []
    items = modes.split(",") if isinstance(modes, str) else list(modes)
    out: set[str] = set()
    for raw in items:
        m = str(raw).strip().lower()
        if not m:
            continue
        if m == "all":
            out.update(MODES)
        elif m in MODES:
            out.add(m)
        else:
            raise InputError(f"unknown transfer mode {m!r}; choose from {', '.join(MODES)} or all")
    return [m for m in MODES if m in out]


def transfer(reference: HeadState, pose_photo: HeadState, modes) -> HeadState:
    """A copy of ``reference`` with the fields of ``modes`` taken from ``pose_photo``."""
    wanted = parse_modes(modes)
    out = copy.deepcopy(reference)
    src = copy.deepcopy(pose_photo)
    if "position" in wanted:
        out.placement = src.placement
    if "pose" in wanted:
        out.pose.yaw, out.pose.pitch, out.pose.roll = src.pose.yaw, src.pose.pitch, src.pose.roll
    if "expression" in wanted:
        out.expression = list(src.expression)
        out.expression_controls = dict(src.expression_controls)
        out.pose.jaw = src.pose.jaw
    if "lighting" in wanted:
        out.lighting = src.lighting
    return out
