"""One JSON-round-trippable bundle for everything that decides how the head looks.

Conventions (fixed; the tests check them). Output image: x points right, y up, z toward the
camera. Angles are in **degrees**.

* ``yaw > 0`` turns the nose toward the image's right,
* ``pitch > 0`` tilts the nose up,
* ``roll > 0`` rotates the face clockwise as seen in the image,
* ``jaw > 0`` opens the mouth (rotation of the jaw joint about the head's x axis),
* ``eye_yaw > 0`` turns both eyes toward the image's right, ``eye_pitch > 0`` turns them up (gaze,
  relative to the head; the eye joints 3 and 4 rotate like the head does for yaw / pitch).

Placement is in the output frame's normalised coordinates: the frame's shorter side spans
[-1, 1]; ``shift_x > 0`` moves the head right, ``shift_y > 0`` moves it up; ``scale`` is relative
to the head model's default portrait framing (1.0).

Values outside a control's range are clamped with a :class:`UserWarning`; NaN or infinity is
rejected with :class:`~caphuman.errors.InputError` (the shared rules: :mod:`caphuman.validation`).
Messages name the field path, e.g. ``head state: "lighting.sh" must be 9 rows of 3 numbers ...``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from caphuman.errors import InputError
from caphuman.validation import check_value, describe, is_number  # noqa: F401 (check_value re-exported)

#: Semantic expression controls, each mapped onto expression coefficients of whatever head model
#: is loaded (see :mod:`caphuman.controls.expressions`). name -> (min, max, meaning).
EXPRESSION_CONTROLS: dict[str, tuple[float, float, str]] = {
    "smile": (-1.0, 1.0, "mouth corners up and out (negative: frown)"),
    "mouth_open": (0.0, 1.0, "opens the mouth by rotating the jaw joint (1 = 25 degrees)"),
    "brow_raise": (-1.0, 1.0, "eyebrows up (negative: lowered)"),
    "brow_furrow": (0.0, 1.0, "inner eyebrows drawn together and down"),
    "eyes_closed": (0.0, 1.0, "blink: upper and lower eyelids meet at 1"),
    "wink_left": (0.0, 1.0, "closes the head's left eye only (the image's right at yaw 0)"),
    "wink_right": (0.0, 1.0, "closes the head's right eye only (the image's left at yaw 0)"),
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
    "eye_yaw": (-30.0, 30.0),
    "eye_pitch": (-20.0, 20.0),
    "scale": (0.2, 4.0),
    "shift_x": (-2.0, 2.0),
    "shift_y": (-2.0, 2.0),
    "azimuth": (-180.0, 180.0),
    "elevation": (-90.0, 90.0),
    "intensity": (0.0, 4.0),
    "ambient": (0.0, 2.0),
    "coefficient": (-5.0, 5.0),  # raw shape / expression / albedo coefficients (in std units)
}


#: Longest ``shape`` / ``expression`` / ``albedo`` list accepted (FLAME has 300 / 100 / 50 components).
MAX_COEFFICIENTS = 1024


def _field(path: str) -> str:
    """How messages name a head-state field: ``head state: "pose.yaw"``."""
    return f'head state: "{path}"'


def _check_range(path: str, value: Any) -> float:
    lo, hi = RANGES[path.rsplit(".", 1)[-1]]
    return check_value(_field(path), value, lo, hi)


def _check_vector(name: str, values: Any) -> list[float]:
    if values is None:
        return []
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise InputError(f"{_field(name)} must be a list of numbers, got {describe(values)}")
    items = list(values)
    if len(items) > MAX_COEFFICIENTS:
        raise InputError(f"{_field(name)} has {len(items)} values; at most {MAX_COEFFICIENTS}")
    lo, hi = RANGES["coefficient"]
    return [check_value(_field(f"{name}[{i}]"), v, lo, hi) for i, v in enumerate(items)]


COLOR_SHAPE = "a list of 3 numbers (RGB, 0..2)"
SH_SHAPE = "9 rows of 3 numbers (SH band x RGB)"


def _listed(values: Any, path: str, expected: str, n: int, what: str = "values") -> list:
    """``values`` as a list of exactly ``n`` items, else an error saying ``path`` must be ``expected``."""
    if isinstance(values, (str, bytes, dict)) or not hasattr(values, "__iter__"):
        raise InputError(f"{_field(path)} must be {expected}, got {describe(values)}")
    items = list(values)
    if len(items) != n:
        unit = what if len(items) != 1 else what[:-1]  # "1 row", "2 values"
        raise InputError(f"{_field(path)} must be {expected}, got {len(items)} {unit}")
    return items


def _sh_rows(sh: Any) -> list[list]:
    rows = _listed(sh, "lighting.sh", SH_SHAPE, 9, "rows")
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, (str, bytes, dict)) or not hasattr(row, "__iter__"):
            raise InputError(f'{_field("lighting.sh")} must be {SH_SHAPE}, got {describe(row)} as row {i}')
        row = list(row)
        if len(row) != 3:
            raise InputError(f'{_field("lighting.sh")} must be {SH_SHAPE}, got {len(row)} values in row {i}')
        out.append(row)
    return out


@dataclass
class Pose:
    """Head rotation, jaw and gaze, degrees (see module docstring for the sign conventions)."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    jaw: float = 0.0
    eye_yaw: float = 0.0
    eye_pitch: float = 0.0

    def validated(self) -> "Pose":
        return Pose(**{f.name: _check_range(f"pose.{f.name}", getattr(self, f.name)) for f in dataclasses.fields(self)})


@dataclass
class Placement:
    """Where the head sits in the output frame (normalised units, shorter side spans [-1, 1])."""

    scale: float = 1.0
    shift_x: float = 0.0
    shift_y: float = 0.0

    def validated(self) -> "Placement":
        return Placement(**{k: _check_range(f"placement.{k}", getattr(self, k))
                            for k in ("scale", "shift_x", "shift_y")})


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
        out = Lighting(**{k: _check_range(f"lighting.{k}", getattr(self, k))
                          for k in ("azimuth", "elevation", "intensity", "ambient")})
        color = _listed(self.color, "lighting.color", COLOR_SHAPE, 3) if self.color is not None else [1.0, 1.0, 1.0]
        out.color = tuple(check_value(_field(f"lighting.color[{i}]"), c, 0.0, 2.0) for i, c in enumerate(color))
        if self.sh is not None:
            rows = _sh_rows(self.sh)
            out.sh = [[check_value(_field(f"lighting.sh[{i}][{c}]"), v, -10.0, 10.0) for c, v in enumerate(r)]
                      for i, r in enumerate(rows)]
        return out


FORMAT = "caphuman.head_state/1"
#: Longest head-state JSON text accepted (a full FLAME state is about 10 kB).
MAX_JSON_CHARS = 1_000_000


def _need_number(path: str, value: Any) -> None:
    """Type check of one JSON value: a number (ranges are checked later, by ``validated``)."""
    if not is_number(value):
        raise InputError(f"{_field(path)} must be a number, got {describe(value)}")


def _key(key: Any) -> str:
    """A JSON key as messages show it: at most 40 characters, unprintable ones escaped."""
    text = str(key)
    text = text if len(text) <= 40 else text[:37] + "..."
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _no_unknown(obj: dict, known: list[str], prefix: str = "") -> None:
    """Unknown fields are refused (a typo like "yaww" would otherwise be silently ignored)."""
    unknown = sorted(_key(k) for k in obj if k not in known)
    if unknown:
        names = ", ".join(f'"{prefix}{k}"' for k in unknown[:5]) + (
            f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
        raise InputError(f"head state: unknown field{'s' if len(unknown) > 1 else ''} {names} "
                         f"(known: {', '.join(known)})")


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
                raise InputError(f'head state: unknown expression control "{_key(name)}" in "expression_controls" '
                                 f"(known: {known})")
            lo, hi, _ = EXPRESSION_CONTROLS[name]
            controls[name] = check_value(_field(f"expression_controls.{_key(name)}"), value, lo, hi)
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
        return {"format": FORMAT, **d}

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_dict(cls, data: Any) -> "HeadState":
        """A validated state from a parsed JSON object. Every field's type is checked (the message
        names the field path and the type expected), unknown fields are refused, values outside a
        control's range are clamped with a warning, NaN/inf refused. ``null`` means the default."""
        if not isinstance(data, dict):
            raise InputError(f"head state JSON must be an object, got {describe(data)}")
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise InputError(f"unsupported head state format {fmt!r} (expected {FORMAT!r})")
        made_from = data.pop("made_from", None)  # informational: the photo a studio preset was made on
        if made_from is not None and not (isinstance(made_from, str) and len(made_from) <= 1000):
            raise InputError(f'{_field("made_from")} must be a file name (text), got {describe(made_from)}')
        _no_unknown(data, [f.name for f in dataclasses.fields(cls)])

        def numbers_list(path: str) -> list:
            value = data.get(path)
            if value is None:
                return []
            if hasattr(value, "tolist") and getattr(value, "ndim", 0) == 1:  # NumPy array (Python callers)
                value = value.tolist()
            if not isinstance(value, (list, tuple)):
                raise InputError(f"{_field(path)} must be a list of numbers, got {describe(value)}")
            for i, v in enumerate(value):
                _need_number(f"{path}[{i}]", v)
            return list(value)

        def sub(kind: type, name: str):
            value = data.get(name)
            if value is None:
                return kind()
            if not isinstance(value, dict):
                raise InputError(f"{_field(name)} must be an object, got {describe(value)}")
            _no_unknown(value, [f.name for f in dataclasses.fields(kind)], name + ".")
            out = {}
            for key, v in value.items():
                if key == "color":
                    if v is not None:
                        v = tuple(_listed(v, "lighting.color", COLOR_SHAPE, 3))
                        for i, c in enumerate(v):
                            _need_number(f"lighting.color[{i}]", c)
                elif key == "sh":
                    if v is not None:
                        v = _sh_rows(v)
                        for i, row in enumerate(v):
                            for c, x in enumerate(row):
                                _need_number(f"lighting.sh[{i}][{c}]", x)
                else:
                    _need_number(f"{name}.{key}", v)
                out[key] = v
            return kind(**out)

        controls = data.get("expression_controls")
        if controls is None:
            controls = {}
        if not isinstance(controls, dict):
            raise InputError(f'{_field("expression_controls")} must be an object of name: number '
                             f"(e.g. {{\"smile\": 0.5}}), got {describe(controls)}")
        for name, v in controls.items():
            _need_number(f"expression_controls.{_key(name)}", v)
        state = cls(
            shape=numbers_list("shape"),
            expression=numbers_list("expression"),
            expression_controls=dict(controls),
            pose=sub(Pose, "pose"),
            placement=sub(Placement, "placement"),
            lighting=sub(Lighting, "lighting"),
            albedo=numbers_list("albedo"),
        )
        return state.validated()

    @classmethod
    def from_json(cls, text: str | bytes) -> "HeadState":
        """Parse and validate a head state; every problem is an :class:`InputError` saying what is wrong."""
        if isinstance(text, (bytes, bytearray)):
            try:
                text = bytes(text).decode("utf-8-sig")
            except UnicodeDecodeError:
                raise InputError("head state JSON is not UTF-8 text") from None
        if not isinstance(text, str):
            raise InputError(f"head state must be JSON text, got {describe(text)}")
        if len(text) > MAX_JSON_CHARS:
            raise InputError(f"head state JSON is too long ({len(text)} characters; at most {MAX_JSON_CHARS})")
        try:
            data = json.loads(text.lstrip("\ufeff"))
        except json.JSONDecodeError as exc:
            raise InputError(f"head state is not valid JSON: {exc.msg} (line {exc.lineno})") from None
        except RecursionError:
            raise InputError("head state JSON is nested too deeply") from None
        except ValueError as exc:  # e.g. an integer literal with thousands of digits
            detail = "a number has too many digits" if "digits" in str(exc) else str(exc).splitlines()[0][:100]
            raise InputError(f"head state is not valid JSON: {detail}") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "HeadState":
        """A copy with top-level fields replaced (deep-copies the rest)."""
        import copy

        return dataclasses.replace(copy.deepcopy(self), **changes)


def read_state_text(path: Any, label: str) -> str:
    """The text of a head-state JSON file (at most :data:`MAX_JSON_CHARS` bytes, UTF-8 with or
    without a BOM). ``label`` names the file in messages (the CLI: the path typed; the studio: the
    file's base name, never a server path)."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_JSON_CHARS + 1)
    except OSError as exc:
        raise InputError(f"cannot read {label}: {exc.strerror or type(exc).__name__}") from None
    if len(data) > MAX_JSON_CHARS:
        raise InputError(f"{label} is too large for a head state (more than {MAX_JSON_CHARS} bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"{label} is not UTF-8 text (a head state is a JSON text file)") from None
