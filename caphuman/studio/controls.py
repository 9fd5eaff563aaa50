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
