"""Make a CapHumanPipeline fast on its device -- the one place that decides how (CLI, studio, benchmark).

What :func:`configure_pipeline` does, per :class:`Acceleration` setting:

* ``dtype``: fp32 (CPU default, the faithful path), fp16 (CUDA default) or bf16 (CUDA or CPU). Every
  model runs in it except the VAE of an fp16 pipeline, which decodes in fp32: the SD VAE decoder
  overflows in fp16 (see :func:`decode_dtype`; :meth:`CapHumanPipeline.decode_latents` enforces it too).
* ``sdpa``: PyTorch scaled-dot-product attention (``AttnProcessor2_0``) on the UNet, CapFace and the
  VAE. diffusers 0.42 already picks it by default on torch >= 2, so this pins the choice (same numbers)
  rather than changing it; on CUDA it dispatches to the flash / memory-efficient kernels.
* ``channels_last``: NHWC weights for the UNet and CapFace (tensor-core friendly convolutions).
  ``None`` = on for CUDA, off on the CPU.
* ``compile``: ``torch.compile`` of the UNet and CapFace forward passes (in place, so hooks, LoRA
  switching and attribute access keep working; a LoRA change triggers a recompile).

With the CPU defaults (fp32, SDPA pinned, no channels-last, no compile) the pipeline computes
exactly what an unconfigured one does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from caphuman.errors import InputError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


def decode_dtype(dtype: torch.dtype) -> torch.dtype:
    """dtype the VAE decodes in for a pipeline running in ``dtype``: fp32 for fp16 (the SD VAE decoder
    overflows to inf/NaN in fp16 on bright images), else ``dtype`` itself (bf16 has fp32's range)."""
    return torch.float32 if dtype == torch.float16 else dtype


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; ``cuda`` without a GPU is an error."""
    if device not in ("auto", "cpu", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {device!r}")
    if device == "cpu":
        return "cpu"
    if torch.cuda.is_available():
        return "cuda"
    if device == "cuda":
        raise InputError("--device cuda: no CUDA device is available (use --device auto or cpu)")
    return "cpu"


@dataclass(frozen=True)
class Acceleration:
    """How to run the pipeline. Build with :meth:`for_device` (resolves ``auto`` values)."""

    device: str = "cpu"
    dtype: str = "fp32"
    sdpa: bool = True
    channels_last: bool | None = None
    compile: bool = False
    compile_mode: str | None = None
    compile_backend: str = "inductor"
    cpu_offload: bool = False

    @classmethod
    def for_device(cls, device: str = "auto", dtype: str = "auto", **kwargs) -> "Acceleration":
        """``device``: auto | cpu | cuda; ``dtype``: auto (fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16."""
        device = resolve_device(device)
        if dtype == "auto":
            dtype = "fp16" if device == "cuda" else "fp32"
        if dtype not in DTYPES:
            raise InputError(f"dtype must be auto, fp32, fp16 or bf16, got {dtype!r}")
        if device == "cpu" and dtype == "fp16":
            raise InputError("fp16 is not supported on the CPU; use --dtype fp32 or bf16")
        return cls(device=device, dtype=dtype, **kwargs)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    @property
    def vae_dtype(self) -> torch.dtype:
        return decode_dtype(self.torch_dtype)

    @property
    def use_channels_last(self) -> bool:
        return self.device == "cuda" if self.channels_last is None else bool(self.channels_last)

    def load_dtype(self):
        """``dtype=`` for ``CapHumanPipeline.from_pretrained``: one dtype, or a per-component dict when the
        VAE differs (so an fp16 pipeline's VAE is loaded in fp32 from the file, not upcast from fp16)."""
        if self.vae_dtype == self.torch_dtype:
            return self.torch_dtype
        return {"default": self.torch_dtype, "vae": self.vae_dtype}

    def describe(self) -> dict:
        """JSON-friendly summary (for sidecars and the benchmark)."""
        d = asdict(self)
        d.update(vae_dtype=DTYPE_NAMES[self.vae_dtype], channels_last=self.use_channels_last,
                 attention="sdpa (AttnProcessor2_0)" if self.sdpa else "as loaded")
        return d


def use_sdpa(pipe) -> None:
    """Pin ``AttnProcessor2_0`` (torch SDPA) on every diffusers attention of the UNet, CapFace and VAE."""
    from diffusers.models.attention_processor import AttnProcessor2_0

    for model in (pipe.unet, pipe.capface.controlnet, pipe.vae):
        model.set_attn_processor(AttnProcessor2_0())


def configure_pipeline(pipe, accel: Acceleration):
    """Apply ``accel`` to ``pipe`` (dtype, device or CPU offload, attention, memory format, compile); returns it.

    Call after loading (and after LoRAs, so a compile sees them; later LoRA changes recompile)."""
    dtype = accel.torch_dtype
    for name, module in pipe.components.items():
        if isinstance(module, torch.nn.Module):
            want = accel.vae_dtype if name == "vae" else dtype
            if module.dtype != want:
                module.to(dtype=want)
    if accel.cpu_offload and accel.device == "cuda":
        pipe.enable_model_cpu_offload()
    else:
        pipe.to(accel.device)
    if accel.sdpa:
        use_sdpa(pipe)
    if accel.use_channels_last:
        for model in (pipe.unet, pipe.capface):
            model.to(memory_format=torch.channels_last)
    if accel.compile:
        for model in (pipe.unet, pipe.capface):
            model.compile(mode=accel.compile_mode, backend=accel.compile_backend)
    return pipe
