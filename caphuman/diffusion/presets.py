"""Sampling presets shared by the CLI (``--preset``) and the studio (scheduler ``lcm``).

* ``original``: the original's sampler -- DDIM, 20 steps, guidance 7 (reference §1.1, §1.6).
* ``fast``: LCM-LoRA for SD1.5 (``latent-consistency/lcm-lora-sdv1-5``, openrail++) with the LCM
  scheduler: 4 steps (4-8 is the useful range), guidance 1. LCM-LoRA is distilled to work without
  classifier-free guidance; guidance 1 skips the unconditional UNet pass (half the UNet work, and the
  negative prompt has no effect); 1.5-2 follows the prompt more closely at twice the UNet cost, higher
  values over-saturate.

The fast preset changes only the scheduler, the steps, the guidance and adds the LoRA (adapter
``fast``, beside an optional user style LoRA): the same ``CapHumanPipeline.__call__`` runs, CapFace
runs every step with the same hint, context, tau and mask gating. Rule used everywhere: the ``lcm``
scheduler means the fast preset, i.e. the LCM-LoRA is active.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from caphuman.errors import InputError, MissingWeightsError

#: Registry key of the LCM-LoRA file.
FAST_LORA_KEY = "lcm_lora"


@dataclass(frozen=True)
class Preset:
    name: str
    scheduler: str
    steps: int
    guidance: float
    description: str
    lora: str | None = None  # registry key of a LoRA the preset needs


ORIGINAL = Preset("original", "ddim", 20, 7.0, "the original sampler: DDIM, 20 steps, guidance 7")
FAST = Preset("fast", "lcm", 4, 1.0, "LCM-LoRA + LCM scheduler: 4 steps, guidance 1 (4-8 steps, guidance 1-2)",
              lora=FAST_LORA_KEY)
PRESETS = {p.name: p for p in (ORIGINAL, FAST)}


def uses_fast_lora(scheduler: str) -> bool:
    """The ``lcm`` scheduler is the fast preset: it runs with the LCM-LoRA."""
    return scheduler == FAST.scheduler


def fast_lora_path(root: str | os.PathLike | None = None) -> Path:
    """Where the LCM-LoRA lives (``checkpoints/lora/fast/lcm-lora-sdv1-5.safetensors``), present or not."""
    from caphuman.weights.registry import local_path

    return local_path(FAST_LORA_KEY, root)


def require_fast_lora(root: str | os.PathLike | None = None) -> Path:
    """The LCM-LoRA file, or :class:`MissingWeightsError` with the command that fetches it."""
    path = fast_lora_path(root)
    if not path.is_file():
        raise MissingWeightsError(f"the fast preset needs the LCM-LoRA ({path} is missing); run "
                                  "`python -m caphuman download fast` (or `python -m caphuman download all`)")
    return path


def check_steps(scheduler: str, steps: int) -> None:
    """LCM cannot run more steps than its 50-step "original" schedule."""
    from caphuman.diffusion.schedulers import LCM_MAX_STEPS

    if uses_fast_lora(scheduler) and not 1 <= int(steps) <= LCM_MAX_STEPS:
        raise InputError(f"the fast preset (lcm) runs 1-{LCM_MAX_STEPS} steps (4-8 recommended), got {steps}")


def resolve(preset: str, scheduler: str | None, steps: int | None, guidance: float | None) -> tuple[str, int, float]:
    """(scheduler, steps, guidance): explicit values win over the preset's; the fast preset's scheduler is fixed."""
    if preset not in PRESETS:
        raise InputError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    p = PRESETS[preset]
    if p.lora and scheduler not in (None, p.scheduler):
        raise InputError(f"the {p.name} preset samples with the {p.scheduler} scheduler; drop --scheduler {scheduler}")
    scheduler = scheduler or p.scheduler
    steps = p.steps if steps is None else steps
    guidance = p.guidance if guidance is None else guidance
    check_steps(scheduler, steps)
    return scheduler, steps, guidance


def values_for_scheduler(scheduler: str, steps, guidance) -> tuple:
    """Studio helper: the steps/guidance to show after the scheduler dropdown changed -- the fast
    preset's when ``lcm`` is picked, the original's when leaving ``lcm`` with the fast values still
    set, else unchanged."""
    if uses_fast_lora(scheduler):
        return FAST.steps, FAST.guidance
    if (steps, guidance) == (FAST.steps, FAST.guidance):
        return ORIGINAL.steps, ORIGINAL.guidance
    return steps, guidance
