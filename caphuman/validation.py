"""One validation layer for every number the CLI, the studio API and the studio UI accept.

Two rules, the same on all three fronts:

* **Head controls** (angles, placement, lighting, expression sliders, raw coefficients) are
  slider-like: a value outside its range is **clamped** with a :class:`UserWarning` that names it
  (the CLI prints ``warning: ...``, the studio shows ``gr.Warning``).
* **Generation parameters** (:data:`GENERATION_RULES`: seed, steps, guidance, strength, tau, eta,
  number of images, resolution, LoRA scale) are explicit choices: a value outside its range is
  **refused** with :class:`~caphuman.errors.InputError` naming the value and its range.

Everywhere: NaN and infinity are refused; booleans, strings, lists, ... are not numbers; integer
parameters must be whole numbers (``2.0`` is 2, ``2.5`` is refused, never rounded); seeds are
-1 (draw a random one) or 0 .. 2**32-1.
"""

from __future__ import annotations

import math
import numbers
import warnings
from dataclasses import dataclass
from typing import Any

from caphuman.errors import InputError

#: Largest seed (seeds are 32-bit everywhere: CLI, API, UI); -1 draws one at random.
MAX_SEED = 2**32 - 1
RANDOM_SEED = -1


def _is_bool(value: Any) -> bool:
    """Python and NumPy booleans (``numpy.bool_``; named ``numpy.bool`` in NumPy 2)."""
    return isinstance(value, bool) or (type(value).__module__ == "numpy" and type(value).__name__ in ("bool", "bool_"))


def describe(value: Any) -> str:
    """A short, safe description of a bad value for an error message (JSON spelling)."""
    if value is None:
        return "null"
    if _is_bool(value):
        return f"a boolean ({str(bool(value)).lower()})"
    if isinstance(value, numbers.Real):
        return f"a number ({show(value)})"
    if isinstance(value, str):
        text = value if len(value) <= 40 else value[:37] + "..."
        return f"a string ({text!r})" if value else "an empty string"
    if isinstance(value, (bytes, bytearray)):
        return "bytes"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "a list"
    return f"a {type(value).__name__}"


def show(v: Any) -> str:
    """A number as a message shows it: ints in full (or their size), floats with %g."""
    if isinstance(v, numbers.Integral) and not _is_bool(v):
        digits = str(abs(int(v)))
        if len(digits) <= 30:
            return str(int(v))
        return f"{'-' if v < 0 else ''}{digits[0]}.{digits[1:3]}e+{len(digits) - 1}"  # beyond float range too
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:g}"


def is_number(value: Any) -> bool:
    """A real number that is not a boolean (Python / NumPy ints and floats)."""
    return isinstance(value, numbers.Real) and not _is_bool(value)


def check_value(name: str, value: Any, lo: float, hi: float, clamp: bool = True) -> float:
    """``value`` as a finite float inside [lo, hi]. NaN/inf and non-numbers are refused; out of
    range: clamped with a :class:`UserWarning` (``clamp=True``, slider-like controls) or refused
    (``clamp=False``). ``-0.0`` becomes ``0.0``."""
    if not is_number(value):
        raise InputError(f"{name} must be a number, got {describe(value)}")
    if isinstance(value, numbers.Integral):
        v_int = int(value)
        inside = lo <= v_int <= hi  # exact for huge ints (no float overflow)
        if inside:
            return float(v_int) + 0.0
        if not clamp:
            raise InputError(f"{name} must be between {show(lo)} and {show(hi)}, got {show(v_int)}")
        clamped = float(lo if v_int < lo else hi)
        warnings.warn(f"{name}={show(v_int)} is outside [{show(lo)}, {show(hi)}]; using {show(clamped)}",
                      UserWarning, stacklevel=3)
        return clamped
    v = float(value)
    if not math.isfinite(v):
        raise InputError(f"{name} must be a finite number, got {show(v)}")
    if lo <= v <= hi:
        return v + 0.0
    if not clamp:
        raise InputError(f"{name} must be between {show(lo)} and {show(hi)}, got {show(v)}")
    clamped = float(min(max(v, lo), hi))
    warnings.warn(f"{name}={show(v)} is outside [{show(lo)}, {show(hi)}]; using {show(clamped)}",
                  UserWarning, stacklevel=3)
    return clamped


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    """``value`` as an int inside [lo, hi], refused otherwise (never rounded, never clamped).
    Integral floats (``20.0``, as JSON clients and Gradio send them) are accepted."""
    if not is_number(value):
        raise InputError(f"{name} must be a whole number, got {describe(value)}")
    if not isinstance(value, numbers.Integral):
        v = float(value)
        if not math.isfinite(v):
            raise InputError(f"{name} must be a finite whole number, got {show(v)}")
        if not v.is_integer():
            raise InputError(f"{name} must be a whole number, got {show(v)}")
        value = int(v)
    value = int(value)
    if not lo <= value <= hi:
        raise InputError(f"{name} must be between {show(lo)} and {show(hi)}, got {show(value)}")
    return value


def check_seed(name: str, value: Any) -> int:
    """-1 (random) or a whole number in 0 .. :data:`MAX_SEED`; returned as given (-1 stays -1)."""
    try:
        return check_int(name, value, RANDOM_SEED, MAX_SEED)
    except InputError as exc:
        if "between" in str(exc):
            raise InputError(f"{name} must be -1 (random) or between 0 and {MAX_SEED}, "
                             f"got {show(int(value) if is_number(value) else value)}") from None
        raise


#: Longest prompt accepted (CLIP reads the first 77 tokens; longer text is almost surely a mistake).
MAX_PROMPT_CHARS = 2000


def check_prompt(value: Any, name: str = "prompt", required: bool = True) -> str:
    """A prompt as stripped text: not empty (when ``required``), at most :data:`MAX_PROMPT_CHARS`."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"{name} must be text, got {describe(value)}")
    text = value.strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{name} is not valid Unicode text (it holds an unpaired surrogate)") from None
    if required and not text:
        raise InputError(f"{name} must not be empty (e.g. 'a photo of a person, studio lighting')")
    if len(text) > MAX_PROMPT_CHARS:
        raise InputError(f"{name} is too long ({len(text)} characters; {MAX_PROMPT_CHARS} at most)")
    return text


@dataclass(frozen=True)
class NumberRule:
    """Range of one generation parameter. ``integer``: whole numbers only; ``multiple``: the value
    must be a multiple of it (resolution); ``seed``: -1 or 0..MAX_SEED."""

    lo: float
    hi: float
    integer: bool = False
    multiple: int = 1
    seed: bool = False

    def describe(self) -> str:
        if self.seed:
            return f"-1 (random) or 0..{MAX_SEED}"
        text = f"{show(self.lo)}..{show(self.hi)}"
        return text + (f", multiple of {self.multiple}" if self.multiple > 1 else "")


#: Every generation parameter: one rule for the CLI flags, the API fields and the UI controls.
GENERATION_RULES: dict[str, NumberRule] = {
    "seed": NumberRule(RANDOM_SEED, MAX_SEED, integer=True, seed=True),
    "steps": NumberRule(1, 150, integer=True),
    "guidance": NumberRule(0.0, 30.0),
    "strength": NumberRule(0.0, 2.0),
    "tau": NumberRule(0, 1000, integer=True),
    "eta": NumberRule(0.0, 1.0),
    "num_images": NumberRule(1, 8, integer=True),
    "resolution": NumberRule(64, 1024, integer=True, multiple=64),
    "lora_scale": NumberRule(0.0, 2.0),
}


def check_generation(field: str, value: Any, label: str | None = None) -> int | float:
    """Check one generation parameter against :data:`GENERATION_RULES` (refused when out of
    range). ``label``: how the front-end calls it in messages (``--num-images``, ``number of images``)."""
    rule = GENERATION_RULES[field]
    name = label or field
    if rule.seed:
        return check_seed(name, value)
    if rule.integer:
        v = check_int(name, value, int(rule.lo), int(rule.hi))
        if v % rule.multiple:
            raise InputError(f"{name} must be a multiple of {rule.multiple}, got {v}")
        return v
    return check_value(name, value, rule.lo, rule.hi, clamp=False)


__all__ = ["MAX_SEED", "RANDOM_SEED", "GENERATION_RULES", "NumberRule", "check_value", "check_int", "check_seed",
           "check_generation", "check_prompt", "describe", "show", "is_number", "MAX_PROMPT_CHARS"]
