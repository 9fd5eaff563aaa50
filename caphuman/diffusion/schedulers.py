"""Schedulers: DDIM exactly as the original sampler (reference §1.6, §5.4) and swappable alternatives.

Note: diffusers' "leading" spacing runs exactly ``steps`` steps; the original runs
``ceil(1000 / (1000 // steps))``, so the two agree only when ``steps`` divides 1000 (10, 20, 25, 50...).

The files' schedule: the original samples with ``alphas_cumprod`` as loaded from its weights files
(loading overwrites the registered buffer), so an fp16 backbone means the fp16-rounded schedule.
:func:`stored_schedule_betas` turns such a stored ``alphas_cumprod`` into ``trained_betas`` (kept in
the converted folder's scheduler config) and :func:`make_scheduler` rebuilds DDIM's ``alphas_cumprod``
from them in float64, which gives back the stored values bit for bit.
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


#: A stored fp32/fp64 ``alphas_cumprod`` within this relative distance of the standard schedule is the
#: standard schedule: fp32 storage rounds by <= 2**-24 and a cumulative product of 1000 factors done in
#: fp32 drifts by at most ~1000 * 2**-24 = 6e-5; an fp16-stored one is off by up to 2**-11 = 4.9e-4.
STANDARD_SCHEDULE_RTOL = 1e-4


def standard_alphas_cumprod():
    """The LDM "linear" schedule as the original registers it: float64 arithmetic, float32 buffer."""
    import torch

    betas = torch.linspace(SD15_SCHEDULE["beta_start"] ** 0.5, SD15_SCHEDULE["beta_end"] ** 0.5,
                           SD15_SCHEDULE["num_train_timesteps"], dtype=torch.float64) ** 2
    return torch.cumprod(1 - betas, 0).float()


def stored_schedule_betas(alphas_cumprod, where: str = "the weights file") -> list[float] | None:
    """``trained_betas`` that reproduce a stored ``alphas_cumprod`` (as the original's float32 buffer
    holds it), or None when it is the standard schedule (stored in fp32/fp64 and within
    :data:`STANDARD_SCHEDULE_RTOL`): such files keep today's configuration."""
    import torch

    from caphuman.errors import InputError

    n = SD15_SCHEDULE["num_train_timesteps"]
    stored = torch.as_tensor(alphas_cumprod)
    ac = stored.detach().to(torch.float32).reshape(-1).double()  # the original's float32 buffer
    if ac.numel() != n or not torch.isfinite(ac).all() or not ((ac > 0) & (ac <= 1)).all():
        raise InputError(f"{where}: alphas_cumprod is not a {n}-step noise schedule (values in (0, 1] expected)")
    wide = stored.dtype in (torch.float32, torch.float64)
    if wide and ((ac - standard_alphas_cumprod().double()).abs() / ac).max() <= STANDARD_SCHEDULE_RTOL:
        return None
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    return (1 - ac / prev).tolist()


def schedule_betas_of(scheduler) -> list[float] | None:
    """The ``trained_betas`` a (converted folder's) scheduler carries, if any."""
    config = getattr(scheduler, "config", None) or {}
    betas = config.get("trained_betas") if hasattr(config, "get") else None
    return list(betas) if betas is not None else None


def make_scheduler(name: str = "ddim", trained_betas: list[float] | None = None, like=None):
    """``ddim`` (the original's sampler), ``dpmpp`` (DPM-Solver++ 2M, same noise schedule) or ``lcm``
    (latent consistency; only meaningful with the LCM-LoRA, see :mod:`caphuman.diffusion.presets`).

    ``trained_betas`` (or those of the scheduler ``like``, e.g. ``pipe.scheduler``): the files'
    schedule (:func:`stored_schedule_betas`); DDIM's ``alphas_cumprod`` is then their float64 cumulative
    product rounded once to float32, i.e. exactly the stored values. DPM++ and LCM take them as is.
    """
    from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, LCMScheduler

    if trained_betas is None and like is not None:
        trained_betas = schedule_betas_of(like)
    extra = {} if trained_betas is None else {"trained_betas": list(trained_betas)}
    if name == "ddim":
        scheduler = DDIMScheduler(**DDIM_CONFIG, **extra)
        if trained_betas is not None:
            import torch

            exact = torch.cumprod(1 - torch.tensor(list(trained_betas), dtype=torch.float64), 0).float()
            scheduler.alphas_cumprod = exact
            scheduler.final_alpha_cumprod = exact[0]  # set_alpha_to_one=False: alpha_prev of the last step
        return scheduler
    if name == "lcm":
        return LCMScheduler(**LCM_CONFIG, **extra)
    if name == "dpmpp":
        return DPMSolverMultistepScheduler(
            **SD15_SCHEDULE, algorithm_type="dpmsolver++", solver_order=2,
            steps_offset=1, timestep_spacing="leading", **extra,
        )
    from caphuman.errors import InputError

    raise InputError(f"unknown scheduler {name!r}; choose one of {', '.join(SCHEDULERS)}")
