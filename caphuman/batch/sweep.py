"""Sweeps: one head control (or several: a grid) stepped over a range, everything else fixed.

A control is named by its dotted :class:`~caphuman.controls.state.HeadState` path:

* ``pose.yaw`` ``pose.pitch`` ``pose.roll`` ``pose.jaw``
* ``expression_controls.<name>`` for the semantic sliders (``smile``, ``mouth_open``, ...)
* ``lighting.azimuth`` ``lighting.elevation`` ``lighting.intensity`` ``lighting.ambient``
* ``placement.scale`` ``placement.shift_x`` ``placement.shift_y``
* ``expression.<k>`` for raw expression coefficient k

Short names are accepted where they are unambiguous (``yaw``, ``smile``, ``azimuth``, ``scale``,
``e3``) and so are the studio's slider keys (``light.azimuth``, ``expr.smile``, ``place.scale``).

An axis is written ``CONTROL=FROM:TO:STEPS`` (``pose.yaw=-60:60:7`` -> -60, -40, ..., 60) or
``CONTROL=V1,V2,...``. Values are checked against the control's range with the same checks as the
head state (:func:`caphuman.controls.state.check_value`), but refused rather than clamped: a clamped
sweep would repeat cells. Several axes make a grid: the first axis runs along the columns of the
contact sheet, the second down its rows (further axes add row blocks); cells are numbered row by
row.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from caphuman.controls.state import EXPRESSION_CONTROLS, RANGES, HeadState, check_value
from caphuman.errors import InputError

#: Most values on one axis, and most cells in one sweep.
MAX_AXIS_STEPS = 64
MAX_CELLS = 400

_SCALARS = {
    "pose": ("yaw", "pitch", "roll", "jaw"),
    "lighting": ("azimuth", "elevation", "intensity", "ambient"),
    "placement": ("scale", "shift_x", "shift_y"),
}
_PREFIXES = {"light": "lighting", "place": "placement", "expr": "expression_controls"}


def controls() -> list[str]:
    """Every sweepable control path (raw coefficients ``expression.<k>`` aside)."""
    out = [f"{group}.{name}" for group, names in _SCALARS.items() for name in names]
    return out + [f"expression_controls.{name}" for name in EXPRESSION_CONTROLS]


def control_path(name: str) -> str:
    """Canonical dotted path of ``name`` (a path, a short name or a studio slider key)."""
    raw = str(name).strip()
    key = raw.lower().replace("-", "_")
    if "." in key:
        group, leaf = key.split(".", 1)
        group = _PREFIXES.get(group, group)
        if group == "raw":
            group = "expression"
        key = f"{group}.{leaf}"
    else:
        matches = [p for p in controls() if p.endswith("." + key)]
        if len(matches) == 1:
            key = matches[0]
        elif re.fullmatch(r"e\d+", key):
            key = f"expression.{key[1:]}"
    if key in controls():
        return key
    if re.fullmatch(r"expression\.\d+", key) and int(key.split(".")[1]) <= 1000:
        return key
    raise InputError(f"unknown head control {raw!r}; known: {', '.join(controls())}, or expression.K "
                     "(raw expression coefficient K); short names like yaw, smile, azimuth work too")


def control_range(path: str) -> tuple[float, float]:
    group, leaf = path.split(".", 1)
    if group == "expression_controls":
        lo, hi, _ = EXPRESSION_CONTROLS[leaf]
        return lo, hi
    if group == "expression":
        return RANGES["coefficient"]
    return RANGES[leaf]


def short_name(path: str) -> str:
    """``pose.yaw`` -> ``yaw``, ``expression.3`` -> ``e3`` (for labels and file names)."""
    group, leaf = path.split(".", 1)
    return f"e{leaf}" if group == "expression" else leaf


def check_control_value(path: str, value: Any, clamp: bool = False) -> float:
    lo, hi = control_range(path)
    return check_value(short_name(path), value, lo, hi, clamp=clamp)


def get_control(state: HeadState, path: str) -> float:
    group, leaf = path.split(".", 1)
    if group == "expression_controls":
        return float((state.expression_controls or {}).get(leaf, 0.0))
    if group == "expression":
        k = int(leaf)
        return float(state.expression[k]) if k < len(state.expression) else 0.0
    return float(getattr(getattr(state, group), leaf))


def set_control(state: HeadState, path: str, value: float) -> None:
    """Set ``path`` on ``state`` in place (not validated). A lighting control drops raw SH lighting,
    as the CLI's light flags do."""
    group, leaf = path.split(".", 1)
    if group == "expression_controls":
        state.expression_controls = {**(state.expression_controls or {}), leaf: float(value)}
    elif group == "expression":
        k = int(leaf)
        coeffs = list(state.expression) + [0.0] * max(0, k + 1 - len(state.expression))
        coeffs[k] = float(value)
        state.expression = coeffs
    else:
        setattr(getattr(state, group), leaf, float(value))
        if group == "lighting":
            state.lighting.sh = None


def format_value(v: float) -> str:
    return f"{round(v, 4):g}"


@dataclass(frozen=True)
class SweepAxis:
    """One control and the values it takes, in order."""

    control: str
    values: tuple[float, ...]

    @classmethod
    def linear(cls, control: str, start: Any, stop: Any, steps: Any) -> "SweepAxis":
        path = control_path(control)
        try:
            n = int(steps)
        except (TypeError, ValueError):
            raise InputError(f"sweep {short_name(path)}: steps must be a whole number, got {steps!r}") from None
        if n != _num(steps, "steps", path) or not 1 <= n <= MAX_AXIS_STEPS:
            raise InputError(f"sweep {short_name(path)}: steps must be a whole number from 1 to {MAX_AXIS_STEPS}, "
                             f"got {steps!r}")
        a = check_control_value(path, start)
        b = check_control_value(path, stop)
        if n == 1 and a != b:
            raise InputError(f"sweep {short_name(path)}: one step from {format_value(a)} to {format_value(b)}; "
                             "use at least 2 steps, or the same from and to")
        values = [a] if n == 1 else [a + (b - a) * i / (n - 1) for i in range(n)]
        return cls.of(path, values)

    @classmethod
    def of(cls, control: str, values) -> "SweepAxis":
        path = control_path(control)
        vals = [round(check_control_value(path, v), 6) for v in values]
        vals = [0.0 if v == 0 else v for v in vals]  # no "-0"
        if not vals or len(vals) > MAX_AXIS_STEPS:
            raise InputError(f"sweep {short_name(path)}: give 1 to {MAX_AXIS_STEPS} values, got {len(vals)}")
        if len(set(vals)) != len(vals):
            raise InputError(f"sweep {short_name(path)}: values repeat ({', '.join(map(format_value, vals))})")
        return cls(path, tuple(vals))

    @classmethod
    def parse(cls, text: str) -> "SweepAxis":
        """``CONTROL=FROM:TO:STEPS`` or ``CONTROL=V1,V2,...``."""
        text = str(text).strip()
        if "=" not in text:
            raise InputError(f"sweep {text!r}: expected CONTROL=FROM:TO:STEPS (e.g. pose.yaw=-60:60:7) "
                             "or CONTROL=V1,V2,...")
        control, spec = (part.strip() for part in text.split("=", 1))
        if ":" in spec:
            parts = spec.split(":")
            if len(parts) != 3:
                raise InputError(f"sweep {text!r}: expected FROM:TO:STEPS, e.g. {control}=-60:60:7")
            return cls.linear(control, _num(parts[0], "from", control), _num(parts[1], "to", control), parts[2])
        return cls.of(control, [_num(v, "value", control) for v in spec.split(",")])

    def to_dict(self) -> dict:
        return {"control": self.control, "values": list(self.values)}

    def __str__(self) -> str:
        return f"{self.control}={','.join(map(format_value, self.values))}"


def _num(text: Any, what: str, control: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise InputError(f"sweep {control}: {what} {text!r} is not a number") from None
    if not math.isfinite(v):
        raise InputError(f"sweep {control}: {what} must be a finite number, got {text!r}")
    return v


@dataclass(frozen=True)
class SweepSpec:
    """Axes of a sweep; one axis is a strip, several make a grid (see the module docstring)."""

    axes: tuple[SweepAxis, ...]

    def __post_init__(self):
        if not self.axes:
            raise InputError("a sweep needs at least one control")
        seen = [a.control for a in self.axes]
        dup = {c for c in seen if seen.count(c) > 1}
        if dup:
            raise InputError(f"sweep: {', '.join(sorted(dup))} given twice")
        if self.size > MAX_CELLS:
            raise InputError(f"sweep: {self.size} cells; at most {MAX_CELLS} per sweep (split it into several jobs)")

    @classmethod
    def from_obj(cls, obj: Any) -> "SweepSpec":
        """From ``"pose.yaw=-60:60:7"``, a list of such strings, ``{"control", "from", "to", "steps"}``,
        ``{"control", "values"}`` or a list of those."""
        items = obj if isinstance(obj, (list, tuple)) else [obj]
        axes = []
        for item in items:
            if isinstance(item, SweepAxis):
                axes.append(item)
            elif isinstance(item, str):
                axes.append(SweepAxis.parse(item))
            elif isinstance(item, dict):
                keys = set(item)
                if "control" not in item:
                    raise InputError('a sweep axis object needs "control", e.g. {"control": "pose.yaw", "from": -60, '
                                     '"to": 60, "steps": 7}')
                if keys == {"control", "values"}:
                    if not isinstance(item["values"], (list, tuple)):
                        raise InputError("sweep: values must be a list of numbers")
                    axes.append(SweepAxis.of(item["control"], item["values"]))
                elif keys == {"control", "from", "to", "steps"}:
                    axes.append(SweepAxis.linear(item["control"], _num(item["from"], "from", item["control"]),
                                                 _num(item["to"], "to", item["control"]), item["steps"]))
                else:
                    raise InputError(f"sweep axis fields must be control/from/to/steps or control/values, got "
                                     f"{', '.join(sorted(map(str, keys)))}")
            else:
                raise InputError(f"a sweep is a string like \"pose.yaw=-60:60:7\" or an object, got {item!r}")
        return cls(tuple(axes))

    @property
    def columns(self) -> int:
        return len(self.axes[0].values)

    @property
    def rows(self) -> int:
        return math.prod(len(a.values) for a in self.axes[1:])

    @property
    def size(self) -> int:
        return self.columns * self.rows

    def cells(self) -> list[dict[str, float]]:
        """Control values of every cell, row by row (the first axis varies fastest)."""
        first, others = self.axes[0], self.axes[1:]
        out = []
        # itertools.product varies its last iterable fastest: reversed, the second axis runs down the rows
        for combo in itertools.product(*[a.values for a in reversed(others)]):
            row = {a.control: v for a, v in zip(reversed(others), combo)}
            for v in first.values:
                out.append({first.control: v, **{a.control: row[a.control] for a in others}})
        return out

    def apply(self, base: HeadState, cell: dict[str, float]) -> HeadState:
        """``base`` with the cell's values set, validated."""
        return apply_values(base, cell)

    def to_dict(self) -> list[dict]:
        return [a.to_dict() for a in self.axes]

    def __str__(self) -> str:
        return " x ".join(str(a) for a in self.axes)


def apply_values(base: HeadState, values: dict[str, float]) -> HeadState:
    """A validated copy of ``base`` with every ``path: value`` set."""
    state = base.replace()
    for path, v in values.items():
        set_control(state, control_path(path), v)
    return state.validated()


def label(cell: dict[str, float]) -> str:
    """``yaw -60 · pitch 10`` (for contact sheets and captions)."""
    return " · ".join(f"{short_name(p)} {format_value(v)}" for p, v in cell.items())


def slug(cell: dict[str, float]) -> str:
    """File-name part for a cell: ``yaw-60_pitch+10``."""
    parts = []
    for p, v in cell.items():
        text = format_value(v)
        parts.append(short_name(p) + (text if text.startswith("-") else "+" + text if v else "0"))
    return re.sub(r"[^A-Za-z0-9.+_-]", "", "_".join(parts))


__all__ = ["SweepAxis", "SweepSpec", "apply_values", "check_control_value", "control_path", "controls", "get_control",
           "label", "set_control", "short_name", "slug", "MAX_AXIS_STEPS", "MAX_CELLS"]
