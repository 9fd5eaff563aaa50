"""Ahead-of-time compilation of the UNet and CapFace on ZeroGPU (``--compile`` on a Space).

``torch.compile`` is not supported on ZeroGPU; AoT compilation through ``spaces`` is. At start-up,
inside one ``@spaces.GPU`` call, an example generation is run with ``spaces.aoti_capture`` on each
module (it stops at the module's first call and keeps its arguments), the module is exported by
``torch.export`` with a dynamic batch dimension (1-16 rows: 1-8 images, doubled by guidance), and
``spaces.aoti_compile`` builds it. Back in the main process ``spaces.aoti_apply`` installs each
compiled model.

A compiled graph has the example's latent size and dtype and no LoRA. So it is installed on a
holder module and the real module's ``forward`` becomes a :class:`CompiledForward`: a call whose
inputs match the captured ones (same structure, same shapes but the batch, no LoRA active) goes to
the compiled model, any other call (another resolution, a LoRA, the fast preset) to the eager
module, whose weights are kept for it.
"""

from __future__ import annotations

import inspect
import logging
import os
from typing import Callable

log = logging.getLogger("caphuman.studio")

#: GPU seconds asked for the start-up compilation (exporting and compiling two SD1.5-sized modules).
COMPILE_SECONDS = 900
#: Rows a compiled module accepts (num_images 1..8, twice that with classifier-free guidance).
MAX_BATCH = 16
#: The compiled resolution (the studio's default) and the example call that captures the inputs.
EXAMPLE = dict(prompt="a photo of a person", num_images=2, num_inference_steps=1, guidance_scale=7.0)
MODULES = ("unet", "capface")
#: The resolution compiled for: ``$CAPHUMAN_AOT_RESOLUTION``, else the studio's default (512).
RESOLUTION_ENV = "CAPHUMAN_AOT_RESOLUTION"


def aot_resolution() -> int:
    from caphuman.validation import check_int

    raw = os.environ.get(RESOLUTION_ENV, "").strip()
    if not raw:
        return 512
    try:
        value = int(raw)
    except ValueError:
        value = raw
    return check_int(RESOLUTION_ENV, value, 64, 1024)


def _leaves(args, kwargs):
    from torch.utils import _pytree as pytree

    return pytree.tree_flatten((args, kwargs))


class CallSignature:
    """What a compiled module accepts, from its captured call (picklable: it is built in the GPU
    worker and sent back): the argument structure, each tensor's shape (dim 0 free where it is the
    batch), dtype and device, and every non-tensor argument's value."""

    def __init__(self, args, kwargs, batch: int):
        import torch

        leaves, spec = _leaves(args, kwargs)
        self.spec = str(spec)
        self.leaves = []
        for x in leaves:
            if torch.is_tensor(x):
                batched = x.ndim >= 1 and x.shape[0] == batch
                self.leaves.append(("tensor", batched, tuple(x.shape[1:] if batched else x.shape), x.dtype, x.device))
            else:
                self.leaves.append(("value", x))

    def matches(self, args, kwargs) -> bool:
        import torch

        leaves, spec = _leaves(args, kwargs)
        if str(spec) != self.spec or len(leaves) != len(self.leaves):
            return False
        batch = None
        for x, sig in zip(leaves, self.leaves):
            if sig[0] == "value":
                if torch.is_tensor(x) or x != sig[1]:
                    return False
                continue
            _, batched, shape, dtype, device = sig
            if not torch.is_tensor(x) or x.dtype != dtype or x.device != device:
                return False
            if not batched:
                if tuple(x.shape) != shape:
                    return False
                continue
            if x.ndim == 0 or tuple(x.shape[1:]) != shape or not 1 <= x.shape[0] <= MAX_BATCH:
                return False
            if batch is None:
                batch = x.shape[0]
            elif x.shape[0] != batch:
                return False
        return True


class CompiledForward:
    """``forward`` of a module with an AoT-compiled twin: calls whose inputs match ``signature`` go
    to ``compiled``, the others to ``eager``; ``usable()`` is an extra condition (no LoRA active)."""

    def __init__(self, compiled: Callable, eager: Callable, signature: CallSignature,
                 usable: Callable[[], bool] = lambda: True):
        self.compiled, self.eager, self.signature, self.usable = compiled, eager, signature, usable
        self.calls = {"compiled": 0, "eager": 0}

    def __call__(self, *args, **kwargs):
        if self.usable() and self.signature.matches(args, kwargs):
            self.calls["compiled"] += 1
            return self.compiled(*args, **kwargs)
        self.calls["eager"] += 1
        return self.eager(*args, **kwargs)


def dynamic_batch(module, args, kwargs, batch: int) -> dict:
    """``dynamic_shapes`` for ``torch.export``: dim 0 of every tensor with ``batch`` rows is one shared
    dynamic dimension (1..MAX_BATCH), everything else static."""
    import torch
    from torch.utils import _pytree as pytree

    dim = torch.export.Dim("batch", min=1, max=MAX_BATCH)
    bound = inspect.signature(module.forward).bind(*args, **kwargs).arguments
    return {name: pytree.tree_map(lambda x: {0: dim} if torch.is_tensor(x) and x.ndim >= 1 and x.shape[0] == batch
                                  else None, value) for name, value in bound.items()}


def example_inputs(pipe, resolution: int = 512):
    """Conditioning for the capture call: a zero hint at ``resolution``, a unit id embedding and CLIP
    tokens of the image encoder's shape (values do not matter: only shapes and dtypes are captured)."""
    import torch

    vision = pipe.image_encoder.config
    tokens = (vision.image_size // vision.patch_size) ** 2 + 1
    id_embedding = torch.nn.functional.normalize(torch.ones(1, 512), dim=-1)
    return dict(hint=torch.zeros(9, resolution, resolution), id_embedding=id_embedding,
                image_embeds=torch.zeros(1, tokens, vision.hidden_size, dtype=pipe.image_encoder.dtype))


def capture(spaces, pipe, name: str, resolution: int):
    """(args, kwargs) of ``pipe.<name>``'s first call in an example generation (``spaces.aoti_capture``)."""
    import torch

    module = getattr(pipe, name)
    with spaces.aoti_capture(module) as call:
        with torch.no_grad():
            pipe(**example_inputs(pipe, resolution), **EXAMPLE, output_type="latent")
    if not call.args and not call.kwargs:
        raise RuntimeError(f"aoti_capture saw no call of {name}")
    return call.args, call.kwargs


def compile_pipeline(spaces, pipe, resolution: int = 512, usable: Callable[[], bool] = lambda: True) -> dict:
    """AoT-compile ``pipe.unet`` and ``pipe.capface`` (see the module docstring); returns a report
    ``{"modules": [...], "resolution": R, "error": None | text}``. Never raises: on failure the
    pipeline stays eager and the report says why."""
    import torch

    @spaces.GPU(duration=COMPILE_SECONDS)
    def compile_on_gpu():
        out = {}
        for name in MODULES:
            module = getattr(pipe, name)
            args, kwargs = capture(spaces, pipe, name, resolution)
            batch = next(x.shape[0] for x in _leaves(args, kwargs)[0] if torch.is_tensor(x) and x.ndim >= 1)
            exported = torch.export.export(module, args=tuple(args), kwargs=dict(kwargs),
                                           dynamic_shapes=dynamic_batch(module, args, kwargs, batch))
            out[name] = (spaces.aoti_compile(exported), CallSignature(args, kwargs, batch))
        return out

    report = {"modules": [], "resolution": resolution, "error": None}
    try:
        compiled = compile_on_gpu()
    except Exception as exc:  # noqa: BLE001 - a failed compile leaves the studio working, eager
        report["error"] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ''}"
        log.warning("ahead-of-time compilation failed, generation stays eager: %s", report["error"])
        return report
    for name, (model, signature) in compiled.items():
        module = getattr(pipe, name)
        holder = torch.nn.Module()  # aoti_apply drains the holder's (no) weights, never the module's
        spaces.aoti_apply(model, holder)
        module.forward = CompiledForward(holder.forward, type(module).forward.__get__(module), signature, usable)
        report["modules"].append(name)
    log.info("ahead-of-time compiled %s at %d px", ", ".join(report["modules"]), resolution)
    return report


def no_lora(pipe) -> Callable[[], bool]:
    """``usable`` for :func:`compile_pipeline`: true while no LoRA adapter is active or fused."""
    from caphuman.diffusion.lora import _state

    def check() -> bool:
        state = _state(pipe)
        return not state["weights"] and not state["fused"]

    return check
