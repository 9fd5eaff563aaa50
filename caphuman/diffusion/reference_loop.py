"""An original-style sampling loop, kept as the yardstick for tests and the benchmark.

It does what the original sampler does per step (reference §1.6, §1.7): for each guidance branch
separately, recompute the hint embedding and mask, run the full CapFace ControlNet (diffusers'
own ``ControlNetModel.forward`` on the raw hint), gate, then run the UNet on that branch alone.
Unlike the original it expands conditioning to ``num_images`` (the original fails for N > 1).
"""

from __future__ import annotations

import torch

from caphuman.diffusion.gating import gate_residuals
from caphuman.diffusion.pipeline import tau_gate


@torch.no_grad()
def original_style_latents(
    pipe,
    prompt: str,
    hint: torch.Tensor,
    id_embedding: torch.Tensor,
    image_embeds: torch.Tensor,
    negative_prompt: str = "",
    num_images: int = 1,
    num_inference_steps: int = 20,
    guidance_scale: float = 7.0,
    strength: float = 1.0,
    tau: int = 0,
    latents: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Final latents (N, 4, h, w) of the two-pass loop; DDIM eta 0 (the scheduler is ``pipe.scheduler``)."""
    device = pipe._execution_device
    capface, unet, scheduler = pipe.capface, pipe.unet, pipe.scheduler
    cond = pipe.encode_text(prompt).expand(num_images, -1, -1)
    uncond = pipe.encode_text(negative_prompt).expand(num_images, -1, -1)
    context = capface.encode_context(image_embeds.to(device), id_embedding.to(device)).expand(num_images, -1, -1)
    hint = pipe.prepare_hint(hint)

    scheduler.set_timesteps(num_inference_steps, device=device)
    if latents is None:
        size = hint.shape[-1] // pipe.vae_scale_factor
        latents = torch.randn((num_images, 4, size, size), generator=generator, device=device, dtype=unet.dtype)
    latents = latents.to(device, unet.dtype) * scheduler.init_noise_sigma

    def branch(x, t, text):
        _, mask = capface.embed_hint(hint)  # recomputed per branch, as in the original
        down, mid = capface.controlnet(
            x, t, encoder_hidden_states=context * tau_gate(t, tau),
            controlnet_cond=hint.expand(x.shape[0], -1, -1, -1), return_dict=False,
        )
        down, mid = gate_residuals(list(down), mid, mask, strength)
        return unet(x, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample

    for t in scheduler.timesteps:
        x = scheduler.scale_model_input(latents, t)
        eps_c = branch(x, t, cond)
        if guidance_scale != 1.0:
            eps_u = branch(x, t, uncond)
            eps = eps_u + guidance_scale * (eps_c - eps_u)
        else:
            eps = eps_c
        latents = scheduler.step(eps, t, latents).prev_sample
    return latents
