"""ZeroGPU glue: ``@gpu(duration=...)`` (``spaces.GPU`` on Hugging Face ZeroGPU, a no-op elsewhere),
the GPU time a generation asks for, and a progress callback that survives the trip to the GPU worker.

How ZeroGPU runs a ``@spaces.GPU`` function: models are moved to CUDA in the main process at start-up
(``spaces`` keeps them aside and hands them to the GPU at each call); each call is run in a forked
worker process that receives the call's arguments pickled. So arguments must pickle (a
:class:`~caphuman.studio.generation.Generator` pickles as a reference to the one loaded at
start-up) and lambdas must not be passed (use :class:`StepProgress`).

``app.py`` imports :mod:`spaces` before torch (ZeroGPU requires it); here we only look it up.
"""

from __future__ import annotations

import os
import pickle
import sys
from dataclasses import dataclass


def spaces_module():
    """The :mod:`spaces` package when it is installed (imported by ``app.py`` first), else None."""
    spaces = sys.modules.get("spaces")
    if spaces is None:
        try:
            import spaces  # noqa: F811 - only when app.py did not import it first
        except ImportError:
            return None
    return spaces if hasattr(spaces, "GPU") else None


def on_zero_gpu() -> bool:
    """Running on a ZeroGPU Space: ``SPACES_ZERO_GPU`` is true (what ``spaces`` itself reads)."""
    return os.environ.get("SPACES_ZERO_GPU", "").strip().lower() in ("1", "t", "true")


def gpu(duration=60, size: str | None = None):
    """Decorator for the functions that need the GPU: ``spaces.GPU(duration=..., size=...)`` when
    :mod:`spaces` is installed (itself a no-op off ZeroGPU), else the function unchanged.
    ``duration``: seconds, or a callable taking the decorated function's arguments and returning
    seconds (ZeroGPU's dynamic duration; shorter asks get better queue priority)."""
    spaces = spaces_module()
    if spaces is None:
        return lambda fn: fn
    kwargs = {"duration": duration}
    if size is not None:
        kwargs["size"] = size
    return spaces.GPU(**kwargs)


@dataclass(frozen=True)
class GpuTime:
    """Seconds of GPU time one generation asks ZeroGPU for.

    ``step_s``: one denoising step of one image at ``ref_pixels`` with guidance (UNet on 2 rows +
    CapFace). The H200 target is 0.4 s/image at 512^2, 20 steps (0.02 s/step); not measured on a
    ZeroGPU card (RTX Pro 6000 half card; ``spaces`` itself scales requests by the card's
    ``duration_factor``), so 2.5x that target is asked. Guidance 1 (the fast preset) skips the
    unconditional UNet row: ``no_cfg_factor``. ``per_image_s``: VAE decode and the output check
    (pose and identity of each image). ``fixed_s``: the worker start (weights handed to the
    GPU), the identity encoders, the scheduler set-up; ``lora_s`` on top when a LoRA is used
    (loaded on its first use). Clamped to [``min_s``, ``max_s``]."""

    step_s: float = 0.05
    ref_pixels: int = 512 * 512
    no_cfg_factor: float = 0.6
    per_image_s: float = 1.5
    fixed_s: float = 8.0
    lora_s: float = 6.0
    min_s: int = 10
    max_s: int = 120

    def seconds(self, steps: int, num_images: int, resolution: int = 512, guidance: float = 7.0,
                lora: bool = False) -> int:
        scale = (resolution * resolution) / self.ref_pixels
        step = self.step_s * scale * (self.no_cfg_factor if guidance == 1.0 else 1.0)
        total = self.fixed_s + num_images * (steps * step + self.per_image_s) + (self.lora_s if lora else 0.0)
        return int(min(self.max_s, max(self.min_s, round(total + 0.5))))


GPU_TIME = GpuTime()


def generation_seconds(params) -> int:
    """GPU seconds for one call of validated :class:`~caphuman.studio.generation.GenerationParams`:
    steps x images (at its resolution; the fast preset's guidance 1 costs less per step)."""
    from caphuman.diffusion.presets import uses_fast_lora

    return GPU_TIME.seconds(params.steps, params.num_images, params.resolution, params.guidance,
                            lora=bool(params.lora) or uses_fast_lora(params.scheduler))


class StepProgress:
    """``on_step(i, n)`` that reports to a ``gr.Progress`` and pickles (a lambda does not, and
    ZeroGPU pickles the arguments of the GPU function)."""

    def __init__(self, progress, desc: str = "denoising", unit: str = "steps"):
        self.progress, self.desc, self.unit = progress, desc, unit

    def __call__(self, i: int, n: int) -> None:
        self.progress((i, n), desc=self.desc, unit=self.unit)


def picklable(obj) -> bool:
    try:
        pickle.dumps(obj)
    except Exception:  # noqa: BLE001 - any failure means "cannot cross to the GPU worker"
        return False
    return True
