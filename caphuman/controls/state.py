"""One JSON-round-trippable bundle for everything that decides how the head looks.

Conventions (fixed; the tests check them). Output image: x points right, y up, z toward the
camera. Angles are in **degrees**.

* ``yaw > 0`` turns the nose toward the image's right,
* ``pitch > 0`` tilts the nose up,
* ``roll > 0`` rotates the face clockwise as seen in the image,
* ``jaw > 0`` opens the mouth (rotation of the jaw joint about the head's x axis).

Placement is in the output frame's normalised coordinates: the frame's shorter side spans
[-1, 1]; ``shift_x > 0`` moves the head right, ``shift_y > 0`` moves it up; ``scale`` is relative
to the head model's default portrait framing (1.0).

Values outside a control's range are clamped with a :class:`UserWarning`; NaN or infinity is
rejected with :class:`~caphuman.errors.InputError`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from dataclasses import dataclass, field
from typing import Any

from caphuman.errors import InputError

#: Semantic expression controls, each mapped onto expression coefficients of whatever head model
#: is loaded (see :mod:`caphuman.controls.expressions`). name -> (min, max, meaning).
EXPRESSION_CONTROLS: dict[str, tuple[float, float, str]] = {
    "smile": (-1.0, 1.0, "mouth corners up and out (negative: frown)"),
    "mouth_open": (0.0, 1.0, "opens the mouth by rotating the jaw joint (1 = 25 degrees)"),
    "brow_raise": (-1.0, 1.0, "eyebrows up (negative: lowered)"),
    "brow_furrow": (0.0, 1.0, "inner eyebrows drawn together and down"),
    "eyes_closed": (0.0, 1.0, "upper and lower eyelids meet at 1"),
    "pucker": (0.0, 1.0, "lips pushed together and forward"),
}

#: Jaw rotation (degrees) that ``mouth_open = 1`` adds.
MOUTH_OPEN_JAW_DEGREES = 25.0

#: name -> (min, max) for every scalar control, used for clamping.
RANGES: dict[str, tuple[float, float]] = {
    "yaw": (-90.0, 90.0),
    "pitch": (-60.0, 60.0),
    "roll": (-60.0, 60.0),
    "jaw": (-5.0, 40.0),
    "scale": (0.2, 4.0),
    "shift_x": (-2.0, 2.0),
    "shift_y": (-2.0, 2.0),
    "azimuth": (-180.0, 180.0),
    "elevation": (-90.0, 90.0),
    "intensity": (0.0, 4.0),
    "ambient": (0.0, 2.0),
    "coefficient": (-5.0, 5.0),  # raw shape / expression / albedo coefficients (in std units)
}


def check_value(name: str, value: Any, lo: float, hi: float, clamp: bool = True) -> float:
    """Return ``value`` as a float inside [lo, hi]; refuse NaN/inf. Out of range: clamp with a
    warning (``clamp=True``, slider-like controls) or refuse (``clamp=False``)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {v}")
    if (v < lo or v > hi) and not clamp:
        raise InputError(f"{name} must be between {lo:g} and {hi:g}, got {v:g}")
    if v < lo or v > hi:
        clamped = min(max(v, lo), hi)
        warnings.warn(f"{name}={v:g} is outside [{lo:g}, {hi:g}]; using {clamped:g}", UserWarning, stacklevel=3)
        return clamped
    return v


def _check_range(name: str, value: Any) -> float:
    lo, hi = RANGES[name]
    return check_value(name, value, lo, hi)


def _check_vector(name: str, values: Any) -> list[float]:
    if values is None:
        return []
    try:
        items = list(values)
    except TypeError:
        raise InputError(f"{name} must be a list of numbers") from None
    lo, hi = RANGES["coefficient"]
    return [check_value(f"{name}[{i}]", v, lo, hi) for i, v in enumerate(items)]


@dataclass
class Pose:
    """Head rotation and jaw, degrees (see module docstring for the sign conventions)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    jaw: float = 0.0

    def validated(self) -> "Pose":
        return Pose(**{k: _check_range(k, getattr(self, k)) for k in ("yaw", "pitch", "roll", "jaw")})


@dataclass
class Placement:
    """Where the head sits in the output frame (normalised units, shorter side spans [-1, 1])."""

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def validated(self) -> "Placement":
        return Placement(**{k: _check_range(k, getattr(self, k)) for k in ("scale", "shift_x", "shift_y")})


@dataclass
class Lighting:
    """A directional light plus ambient, or raw spherical-harmonics coefficients.

    ``azimuth`` (degrees): 0 = light from the camera, +90 = from the image's right.
    ``elevation`` (degrees): +90 = from above. ``intensity`` scales the directional part,
    ``ambient`` adds uniform light. ``color`` is the light's RGB tint in [0, 2].
    ``sh``: optional raw 9x3 SH coefficients (DECA's basis and order, see
    :mod:`caphuman.render.shading`); when given it overrides the four controls above.
    """

    azimuth: float = 0.0
    elevation: float = 20.0
    intensity: float = 0.8
    ambient: float = 0.45
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)
    sh: list[list[float]] | None = None

    def validated(self) -> "Lighting":
        out = Lighting(**{k: _check_range(k, getattr(self, k)) for k in ("azimuth", "elevation", "intensity", "ambient")})
        color = list(self.color) if self.color is not None else [1.0, 1.0, 1.0]
        if len(color) != 3:
            raise InputError("lighting color must have 3 values (RGB)")
        out.color = tuple(check_value(f"color[{i}]", c, 0.0, 2.0) for i, c in enumerate(color))
        if self.sh is not None:
            rows = [list(r) for r in self.sh]
            if len(rows) != 9 or any(len(r) != 3 for r in rows):
                raise InputError("raw SH lighting must be 9 rows of 3 values (band x RGB)")
            out.sh = [[check_value(f"sh[{i}][{c}]", v, -10.0, 10.0) for c, v in enumerate(r)] for i, r in enumerate(rows)]
        return out


@dataclass
class HeadState:
    """The full head state: identity shape, expression, pose, placement, lighting, albedo.

    ``shape``, ``expression`` and ``albedo`` are raw model coefficients (in units of each
    component's standard deviation for FLAME/DECA and the built-in head); lists shorter than the
    model's component count are zero-padded, longer ones truncated. ``expression_controls`` are
    the semantic sliders of :data:`EXPRESSION_CONTROLS`; their effect is added to ``expression``.
    """

    shape: list[float] = field(default_factory=list)
    expression: list[float] = field(default_factory=list)
    expression_controls: dict[str, float] = field(default_factory=dict)
    pose: Pose = field(default_factory=Pose)
    placement: Placement = field(default_factory=Placement)
    lighting: Lighting = field(default_factory=Lighting)
    albedo: list[float] = field(default_factory=list)

    # ------------------------------------------------------------------ validation
    def validated(self) -> "HeadState":
        """A copy with every value checked: clamped into range (with a warning) or refused."""
        controls: dict[str, float] = {}
        for name, value in (self.expression_controls or {}).items():
            if name not in EXPRESSION_CONTROLS:
                known = ", ".join(EXPRESSION_CONTROLS)
                raise InputError(f"unknown expression control {name!r}; known: {known}")
            lo, hi, _ = EXPRESSION_CONTROLS[name]
            controls[name] = check_value(name, value, lo, hi)
        return HeadState(
            shape=_check_vector("shape", self.shape),
            expression=_check_vector("expression", self.expression),
            expression_controls=controls,
            pose=self.pose.validated(),
            placement=self.placement.validated(),
            lighting=self.lighting.validated(),
            albedo=_check_vector("albedo", self.albedo),
        )

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lighting"]["color"] = list(self.lighting.color)
        return {"format": "caphuman.head_state/1", **d}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "HeadState":
        if not isinstance(data, dict):
            raise InputError("head state JSON must be an object")
        data = dict(data)
        fmt = data.pop("format", "caphuman.head_state/1")
        if fmt != "caphuman.head_state/1":
            raise InputError(f"unsupported head state format {fmt!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise InputError(f"unknown head state fields: {', '.join(sorted(unknown))}")

        def sub(kind: type, value: Any, label: str):
            if value is None:
                return kind()
            if not isinstance(value, dict):
                raise InputError(f"{label} must be an object")
            names = {f.name for f in dataclasses.fields(kind)}
            bad = set(value) - names
            if bad:
                raise InputError(f"unknown {label} fields: {', '.join(sorted(bad))}")
            value = dict(value)
            if "color" in value and value["color"] is not None:
                value["color"] = tuple(value["color"])
            return kind(**value)

        state = cls(
            shape=list(data.get("shape") or []),
            expression=list(data.get("expression") or []),
            expression_controls=dict(data.get("expression_controls") or {}),
            pose=sub(Pose, data.get("pose"), "pose"),
            placement=sub(Placement, data.get("placement"), "placement"),
            lighting=sub(Lighting, data.get("lighting"), "lighting"),
            albedo=list(data.get("albedo") or []),
        )
        return state.validated()

    @classmethod
    def from_json(cls, text: str) -> "HeadState":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InputError(f"head state is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "HeadState":
        """A copy with top-level fields replaced (deep-copies the rest)."""
        import copy

        return dataclasses.replace(copy.deepcopy(self), **changes)
