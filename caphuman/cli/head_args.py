"""Head-control command-line options shared by ``preview`` and ``generate``."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from caphuman.controls.state import EXPRESSION_CONTROLS, HeadState
from caphuman.errors import InputError


def add_head_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("head controls (degrees; x right, y up, z toward the camera)")
    g.add_argument("--head", default="auto", help="auto | builtin | PATH (FLAME folder/.pkl or head .npz)")
    g.add_argument("--params", metavar="IN.json", help="start from a saved head state (flags override it)")
    g.add_argument("--yaw", type=float, help="> 0 turns the nose to the image's right (range +-90)")
    g.add_argument("--pitch", type=float, help="> 0 tilts the nose up (range +-60)")
    g.add_argument("--roll", type=float, help="> 0 rotates the face clockwise in the image (range +-60)")
    g.add_argument("--jaw", type=float, help="jaw opening in degrees (-5..40)")
    g.add_argument("--eye-yaw", type=float, help="gaze: > 0 turns the eyes to the image's right (range +-30)")
    g.add_argument("--eye-pitch", type=float, help="gaze: > 0 turns the eyes up (range +-20)")
    g.add_argument("--expression", "-e", action="append", default=[], metavar="NAME=VALUE",
                   help="semantic expression (see --list-expressions) or raw coefficient as e0=VALUE, e1=...")
    g.add_argument("--light-azimuth", type=float, help="0 = from the camera, +90 = from the image's right")
    g.add_argument("--light-elevation", type=float, help="+90 = from above")
    g.add_argument("--light-intensity", type=float, help="directional light strength (0..4)")
    g.add_argument("--ambient", type=float, help="ambient light (0..2)")
    g.add_argument("--scale", type=float, help="head size relative to the default framing (0.2..4)")
    g.add_argument("--shift-x", type=float, help="move right, in frame units (shorter side spans -1..1)")
    g.add_argument("--shift-y", type=float, help="move up, in frame units")


def add_reference_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    g = parser.add_argument_group("reference photos")
    g.add_argument("--reference", metavar="IMG", required=required,
                   help="reference photo: the head is fitted to it and drawn in its frame")
    g.add_argument("--pose-reference", metavar="IMG", help="photo whose head position/pose/... are transferred")
    g.add_argument("--modes", default="position,pose",
                   help="what --pose-reference transfers: position,pose,expression,lighting or all")


def _parse_expression(item: str) -> tuple[str, float]:
    if "=" not in item:
        raise InputError(f"--expression expects NAME=VALUE, got {item!r}")
    name, value = item.split("=", 1)
    name = name.strip()
    try:
        number = float(value)
    except ValueError:
        raise InputError(f"--expression {name}: {value!r} is not a number") from None
    return name, number


def read_params_file(name: str) -> HeadState:
    """``--params FILE``: a saved head state; every problem is one line naming the file."""
    from caphuman.controls.state import read_state_text

    text = read_state_text(name, f"--params {name}")
    try:
        return HeadState.from_json(text)
    except InputError as exc:
        raise InputError(f"--params {name}: {exc}") from None


def state_from_args(args: argparse.Namespace, base: HeadState | None = None) -> HeadState:
    """Build a validated :class:`HeadState`: ``--params`` (or ``base``) then the flags on top.
    Values outside a control's range are clamped; each clamp prints one ``warning:`` line."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = _state_from_args(args, base)
    for w in caught:
        if issubclass(w.category, UserWarning):
            print(f"warning: {w.message}", file=sys.stderr)
    return state


def _state_from_args(args: argparse.Namespace, base: HeadState | None) -> HeadState:
    state = base if base is not None else HeadState()
    if getattr(args, "params", None):
        state = read_params_file(args.params)
    state = state.replace()
    for flag, (obj, attr) in {
        "yaw": (state.pose, "yaw"), "pitch": (state.pose, "pitch"), "roll": (state.pose, "roll"),
        "jaw": (state.pose, "jaw"), "eye_yaw": (state.pose, "eye_yaw"), "eye_pitch": (state.pose, "eye_pitch"),
        "light_azimuth": (state.lighting, "azimuth"),
        "light_elevation": (state.lighting, "elevation"), "light_intensity": (state.lighting, "intensity"),
        "ambient": (state.lighting, "ambient"), "scale": (state.placement, "scale"),
        "shift_x": (state.placement, "shift_x"), "shift_y": (state.placement, "shift_y"),
    }.items():
        value = getattr(args, flag, None)
        if value is not None:
            setattr(obj, attr, value)
            if obj is state.lighting:
                state.lighting.sh = None  # explicit light controls replace raw SH from --params
    for item in getattr(args, "expression", []) or []:
        name, value = _parse_expression(item)
        if name in EXPRESSION_CONTROLS:
            state.expression_controls[name] = value
        elif name.startswith("e") and name[1:].isdigit():
            k = int(name[1:])
            if k > 1000:
                raise InputError(f"--expression {name}: coefficient index too large")
            coeffs = list(state.expression) + [0.0] * max(0, k + 1 - len(state.expression))
            coeffs[k] = value
            state.expression = coeffs
        else:
            known = ", ".join(EXPRESSION_CONTROLS)
            raise InputError(f"unknown expression {name!r}; known: {known} (or e0, e1, ... for raw coefficients)")
    return state.validated()


def list_expressions() -> str:
    lines = ["semantic expressions (use --expression NAME=VALUE):"]
    for name, (lo, hi, meaning) in EXPRESSION_CONTROLS.items():
        lines.append(f"  {name:<12} [{lo:g}, {hi:g}]  {meaning}")
    lines.append("raw coefficients: e0=VALUE, e1=VALUE, ... (standard-deviation units)")
    return "\n".join(lines)


def state_to_json_file(state: HeadState, path: str) -> None:
    try:
        Path(path).write_text(state.to_json() + "\n")
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None


__all__ = ["add_head_arguments", "add_reference_arguments", "state_from_args", "list_expressions", "state_to_json_file"]
