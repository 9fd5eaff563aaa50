"""Studio sliders <-> :class:`HeadState`.

One flat, ordered list of slider specs (the UI builds one ``gr.Slider`` per spec, in order) and two
pure functions: :func:`state_from_values` (slider values on top of a base state) and
:func:`values_from_state`. Units: angles in degrees, placement in frame units (shorter side spans
[-1, 1]), expression sliders and raw coefficients unitless (std units for raw coefficients).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Pose-reference modes and the copying itself come from photo analysis (reference §1.4): one
# implementation for the CLI and the studio. Re-exported here for the UI.
from caphuman.face.transfer import MODES as TRANSFER_MODES  # noqa: F401
from caphuman.face.transfer import transfer  # noqa: F401
from caphuman.controls.state import EXPRESSION_CONTROLS, RANGES, HeadState

#: Raw expression coefficients exposed in the "Advanced" accordion (e0 .. e{N-1}).
NUM_RAW_EXPRESSION = 10


@dataclass(frozen=True)
class SliderSpec:
    """``key``: ``pose.yaw`` / ``expr.smile`` / ``light.azimuth`` / ``place.scale`` / ``raw.3``."""

    key: str
    label: str
    lo: float
    hi: float
    step: float
    group: str  # "pose" | "expression" | "lighting" | "placement" | "raw"
    info: str = ""


def _specs() -> list[SliderSpec]:
    r = RANGES
    specs = [
        SliderSpec("pose.yaw", "Yaw (deg)", *r["yaw"], 1.0, "pose", "> 0 turns the nose to the image's right"),
        SliderSpec("pose.pitch", "Pitch (deg)", *r["pitch"], 1.0, "pose", "> 0 tilts the nose up"),
        SliderSpec("pose.roll", "Roll (deg)", *r["roll"], 1.0, "pose", "> 0 rotates clockwise"),
        SliderSpec("pose.jaw", "Jaw (deg)", *r["jaw"], 0.5, "pose", "opens the mouth"),
        SliderSpec("pose.eye_yaw", "Gaze left/right (deg)", *r["eye_yaw"], 1.0, "pose",
                   "> 0 turns the eyes to the image's right"),
        SliderSpec("pose.eye_pitch", "Gaze up/down (deg)", *r["eye_pitch"], 1.0, "pose", "> 0 turns the eyes up"),
    ]
    for name, (lo, hi, meaning) in EXPRESSION_CONTROLS.items():
        label = "Eyes closed (blink)" if name == "eyes_closed" else name.replace("_", " ").capitalize()
        specs.append(SliderSpec(f"expr.{name}", label, lo, hi, 0.05, "expression", meaning))
    specs += [
        SliderSpec("light.azimuth", "Light azimuth (deg)", *r["azimuth"], 1.0, "lighting", "0 = from the camera, +90 = from the right"),
        SliderSpec("light.elevation", "Light elevation (deg)", *r["elevation"], 1.0, "lighting", "+90 = from above"),
        SliderSpec("light.intensity", "Light intensity", *r["intensity"], 0.05, "lighting"),
        SliderSpec("light.ambient", "Ambient", *r["ambient"], 0.05, "lighting"),
        SliderSpec("place.scale", "Scale", *r["scale"], 0.01, "placement", "relative to the default framing"),
        SliderSpec("place.shift_x", "Shift x", *r["shift_x"], 0.01, "placement", "frame units, > 0 moves right"),
        SliderSpec("place.shift_y", "Shift y", *r["shift_y"], 0.01, "placement", "frame units, > 0 moves up"),
    ]
    lo, hi = -3.0, 3.0  # the useful part of RANGES["coefficient"]; the API accepts +-5
    specs += [SliderSpec(f"raw.{i}", f"e{i}", lo, hi, 0.05, "raw") for i in range(NUM_RAW_EXPRESSION)]
    return specs


SLIDERS: list[SliderSpec] = _specs()
KEYS: list[str] = [s.key for s in SLIDERS]


def values_from_state(state: HeadState) -> list[float]:
    """Slider values (in :data:`SLIDERS` order) showing ``state``; raw values clipped to the slider range."""
    out = []
    for spec in SLIDERS:
        group, name = spec.key.split(".", 1)
        if group == "pose":
            v = getattr(state.pose, name)
        elif group == "expr":
            v = (state.expression_controls or {}).get(name, 0.0)
        elif group == "light":
            v = getattr(state.lighting, name)
        elif group == "place":
            v = getattr(state.placement, name)
        else:
            i = int(name)
            v = state.expression[i] if i < len(state.expression) else 0.0
        out.append(snap(spec, v))
    return out


def snap(spec: SliderSpec, value: float) -> float:
    """``value`` clipped to the slider's range and rounded to its step (what the slider shows)."""
    v = min(max(float(value), spec.lo), spec.hi)
    decimals = max(0, -int(math.floor(math.log10(spec.step) + 1e-9))) if spec.step < 1 else 0
    return float(round(round(v / spec.step) * spec.step, decimals)) + 0.0


def on_screen(state: HeadState) -> HeadState:
    """``state`` with every slider-driven value replaced by what its slider shows (rounded to the
    step): the state the page, the preset, the API and Generate all agree on."""
    return state_from_values(state, values_from_state(state))


def preset_name(state: HeadState) -> str:
    """A readable preset file name, e.g. ``head-yaw30-smile05.json`` (``head-neutral.json``)."""
    parts = []
    for spec, v in zip(SLIDERS, values_from_state(state)):
        group, name = spec.key.split(".", 1)
        if group not in ("pose", "expr") or v == 0:
            continue
        label = name.replace("_", "")
        sign = "-" if v < 0 else ""
        parts.append(f"{label}{v:g}" if group == "pose" else f"{label}{sign}{abs(round(v * 10)):02d}")
    return "head-" + ("-".join(parts[:6]) or "neutral") + ".json"


def state_from_values(base: HeadState | None, values) -> HeadState:
    """``base`` (shape, albedo, raw coefficients beyond the sliders, raw SH kept unless a light
    slider moved) with every slider value applied. Not validated: call ``.validated()``."""
    values = list(values)
    if len(values) != len(SLIDERS):
        raise ValueError(f"expected {len(SLIDERS)} slider values, got {len(values)}")
    state = (base or HeadState()).replace()
    state.expression_controls = dict(state.expression_controls or {})
    expression = list(state.expression)
    light_changed = False
    for spec, v in zip(SLIDERS, values):
        v = float(v) if v is not None else 0.0
        group, name = spec.key.split(".", 1)
        if group == "pose":
            setattr(state.pose, name, v)
        elif group == "expr":
            state.expression_controls[name] = v
        elif group == "light":
            light_changed |= getattr(state.lighting, name) != v
            setattr(state.lighting, name, v)
        elif group == "place":
            setattr(state.placement, name, v)
        else:
            i = int(name)
            if i >= len(expression):
                expression += [0.0] * (i + 1 - len(expression))
            expression[i] = v
    while expression and expression[-1] == 0.0:
        expression.pop()
    state.expression = expression
    if light_changed:
        state.lighting.sh = None
    return state


@dataclass
class MergedPreset:
    """A preset applied to the head on screen: the new ``state``, the fields it ``changed``
    (``pose.yaw``, ...), ``notes`` (clamped values, parts left alone and why) and the photo it
    says it was ``made_from`` (None when it does not say)."""

    state: HeadState
    changed: list
    notes: list
    made_from: str | None = None


def merge_preset(current: HeadState, text: str, placement: bool = False) -> MergedPreset:
    """Apply a preset's JSON ``text`` on top of ``current``, changing exactly the fields it names.

    Validated by :meth:`HeadState.from_dict` (the one set of rules: unknown fields and wrong types
    refused, out of range clamped; each clamp becomes a note). The placement changes only with
    ``placement=True`` ("apply placement too"); ``shape`` / ``albedo`` (the face of the photo the
    preset was made on) never change: they belong to the photo in use."""
    import json
    import warnings

    from caphuman.controls.state import MAX_JSON_CHARS
    from caphuman.errors import InputError

    if len(text) > MAX_JSON_CHARS:
        raise InputError(f"the preset is too long ({len(text)} characters; at most {MAX_JSON_CHARS})")
    try:
        data = json.loads(text.lstrip("\ufeff"))
    except (json.JSONDecodeError, RecursionError, ValueError) as exc:
        raise InputError(f"the preset is not valid JSON: {getattr(exc, 'msg', exc.__class__.__name__)}") from None
    if not isinstance(data, dict):
        raise InputError("a preset must be a JSON object such as {\"pose\": {\"yaw\": 30}}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = HeadState.from_dict(data)  # type checks + clamping, for the named fields only below
    notes = [str(w.message).replace("head state: ", "") for w in caught if issubclass(w.category, UserWarning)]
    made_from = data.get("made_from") if isinstance(data.get("made_from"), str) else None
    out = current.replace()
    changed: list[str] = []

    def named(group: str) -> dict:
        value = data.get(group)
        return value if isinstance(value, dict) else {}

    for key in named("pose"):
        setattr(out.pose, key, getattr(saved.pose, key))
        changed.append(f"pose.{key}")
    light = named("lighting")
    for key in light:
        setattr(out.lighting, key, getattr(saved.lighting, key))
        changed.append(f"lighting.{key}")
    if light and "sh" not in light and set(light) & {"azimuth", "elevation", "intensity", "ambient"}:
        out.lighting.sh = None  # the named light controls replace raw SH the head had
    controls = named("expression_controls")
    if controls:
        out.expression_controls = {**(out.expression_controls or {}), **{k: saved.expression_controls[k] for k in controls}}
        changed += [f"expression_controls.{k}" for k in controls]
    if data.get("expression") is not None:
        out.expression = list(saved.expression)
        changed.append("expression")
    if named("placement"):
        if placement:
            for key in named("placement"):
                setattr(out.placement, key, getattr(saved.placement, key))
                changed.append(f"placement.{key}")
        else:
            notes.append("its placement (head size and position) was not applied: tick \"apply placement too\" "
                         "to use it")
    if data.get("shape") or data.get("albedo"):
        notes.append("its face shape and colour belong to the photo it was made on: the head keeps the photo in use")
    return MergedPreset(out, changed, notes, made_from)
