"""Schedulers: DDIM exactly as the original sampler (reference §1.6, §5.4) and swappable alternatives.

Note: diffusers' "leading" spacing runs exactly ``steps`` steps; the original runs
``ceil(1000 / (1000 // steps))``, so the two agree only when ``steps`` divides 1000 (10, 20, 25, 50...).
"""

from __future__ import annotations

#: SD1.5 / LDM "linear" schedule: betas = linspace(sqrt(0.00085), sqrt(0.012), 1000) ** 2.
SD15_SCHEDULE = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    prediction_type="epsilon",
)

#: Original DDIM sampler: timesteps 1 + c*k (c = 1000 // S), alpha_prev of the last step = alphas_cumprod[0].
DDIM_CONFIG = dict(
    SD15_SCHEDULE,
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    timestep_spacing="leading",
)

#: Latent-consistency sampler for the LCM-LoRA (the fast preset): the SD1.5 schedule with the settings
#: diffusers derives from an SD1.5 scheduler config (``LCMScheduler.from_config``): 50 "original" DDIM
#: steps to skip along, boundary-condition scaling 10. Timesteps for 4 steps: 999, 759, 499, 259.
LCM_CONFIG = dict(
    SD15_SCHEDULE,
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    original_inference_steps=50,
    timestep_spacing="leading",
    timestep_scaling=10.0,
)
#: LCM cannot run more steps than its "original" schedule has.
LCM_MAX_STEPS = LCM_CONFIG["original_inference_steps"]

SCHEDULERS = ("ddim", "dpmpp", "lcm")


def make_scheduler(name: str = "ddim"):
    """``ddim`` (the original's sampler), ``dpmpp`` (DPM-Solver++ 2M, same noise schedule) or ``lcm``
    (latent consistency; only meaningful with the LCM-LoRA, see :mod:`caphuman.diffusion.presets`)."""
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler

    if name == "ddim":
        return DDIMScheduler(**DDIM_CONFIG)
    if name == "lcm":
        return LCMScheduler(**LCM_CONFIG)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(
            **SD15_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2,
            steps_offset=1, timestep_spacing="leading",
        )
    from caphuman.errors import InputError

    raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
