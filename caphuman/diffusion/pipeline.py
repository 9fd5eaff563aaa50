"""CapHumanPipeline: (prompt, reference identity, 9-channel head hint) -> portraits.

The denoising loop follows the original sampler (reference §1.3-1.6, §2.6, §2.10) and changes only
what provably does not affect the result:

* CapFace runs ONCE per step: both guidance branches give it the same x_t, t, hint and context.
* The UNet runs cond + uncond as ONE batch (skipped to cond only when ``guidance_scale == 1``).
* Hint embedding and mask are computed once per call (they depend on neither t nor context).
* Every conditioning tensor is expanded to ``num_images`` (the original fails for more than one).
* A batch may mix requests: per-image prompts, negative prompts, hints, identities and generators
  (``caphuman batch``); each image depends only on its own inputs and generator, so it equals the
  image of a one-image call with the same inputs and seed.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from diffusers import AutoencoderKL, DiffusionPipeline, UNet2DConditionModel
from diffusers.loaders import StableDiffusionLoraLoaderMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer, CLIPVisionModel
from transformers.image_processing_utils import BaseImageProcessor

from caphuman.diffusion.acceleration import decode_dtype
from caphuman.diffusion.capface import CapFaceModel
from caphuman.diffusion.gating import gate_residuals
from caphuman.face.clip_image import pil_clip_processor


@dataclass
class CapHumanOutput:
    """``images``: list of PIL images, or uint8 array (N, H, W, 3) for ``output_type="np"``, or
    latents (N, 4, H/8, W/8) for ``output_type="latent"``. ``mask``: predicted face mask (1 or N, 1, H/8, W/8)."""

    images: Any
    mask: torch.Tensor | None = None


def tau_gate(timestep: int, tau: int) -> float:
    """Multiplier of the CapFace context at DDPM timestep ``timestep``: 0 when tau != 0 and t > tau, else 1."""
    return 0.0 if (tau != 0 and int(timestep) > tau) else 1.0


class CapHumanPipeline(DiffusionPipeline, StableDiffusionLoraLoaderMixin):
    """CapHuman inference on diffusers components.

    Components: ``vae`` (AutoencoderKL), ``text_encoder`` (CLIPTextModel) + ``tokenizer``, ``unet``
    (SD1.5 UNet2DConditionModel), ``capface`` (:class:`CapFaceModel`), ``scheduler`` (DDIM as the
    original by default), ``image_encoder`` (CLIPVisionModel) + ``feature_extractor`` (CLIP image processor,
    always transformers' PIL backend: a torchvision-backed one is replaced by its PIL twin, so a loaded
    or saved folder preprocesses exactly like the original whether or not torchvision is installed).
    """

    model_cpu_offload_seq = "text_encoder->image_encoder->capface->unet->vae"
    _optional_components = ["image_encoder", "feature_extractor"]

    def __init__(
        self,
        vae: AutoencoderKL,
        text_encoder: CLIPTextModel,
        tokenizer: CLIPTokenizer,
        unet: UNet2DConditionModel,
        capface: CapFaceModel,
        scheduler,
        image_encoder: CLIPVisionModel | None = None,
        feature_extractor: BaseImageProcessor | None = None,
    ):
        super().__init__()
        if feature_extractor is not None:  # always the PIL backend: the original's exact pixels (reference §3.1)
            feature_extractor = pil_clip_processor(feature_extractor)
        self.register_modules(
            vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, capface=capface,
            scheduler=scheduler, image_encoder=image_encoder, feature_extractor=feature_extractor,
        )
        self.vae_scale_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)

    # ------------------------------------------------------------------ conditioning encoders
    @torch.no_grad()
    def encode_text(self, text: str, device: torch.device | None = None) -> torch.Tensor:
        """CLIP last hidden state (1, 77, D) of ``text``: padded to max length, truncated, no attention mask.
        ``device``: the execution device when the caller knows it (finding it walks every module)."""
        ids = self.tokenizer(
            [text], padding="max_length", max_length=self.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(device or self._execution_device))[0]

    @torch.no_grad()
    def encode_face_image(self, face_only_image: Image.Image, device: torch.device | None = None) -> torch.Tensor:
        """CLIP-vision ``last_hidden_state`` (1, 257, 1024) of the face-only reference image."""
        if self.image_encoder is None or self.feature_extractor is None:
            raise ValueError("pass image_embeds, or load the pipeline with image_encoder and feature_extractor")
        pixels = self.feature_extractor(images=face_only_image.convert("RGB"), return_tensors="pt").pixel_values
        pixels = pixels.to(device or self._execution_device, dtype=self.image_encoder.dtype)
        return self.image_encoder(pixels).last_hidden_state

    def prepare_hint(self, hint, size: int | None = None, device: torch.device | None = None) -> torch.Tensor:
        """(9, H, W) or (B, 9, H, W) tensor/ndarray of raw render values -> (B, 9, H, W) on device (B = 1 for a
        3-d hint). No rescaling."""
        hint = torch.as_tensor(np.asarray(hint) if not torch.is_tensor(hint) else hint)
        if hint.ndim == 3:
            hint = hint[None]
        if hint.ndim != 4 or hint.shape[1] != self.capface.config.conditioning_channels:
            raise ValueError(f"hint must be (9, H, W) or (B, 9, H, W), got {tuple(hint.shape)}")
        multiple = self.vae_scale_factor * 2 ** (len(self.unet.config.block_out_channels) - 1)
        if hint.shape[-1] != hint.shape[-2] or hint.shape[-1] % multiple != 0:
            raise ValueError(f"hint must be square with a side divisible by {multiple}, got {tuple(hint.shape[-2:])}")
        if size is not None and hint.shape[-1] != size:
            raise ValueError(f"hint side {hint.shape[-1]} != output size {size}")
        return hint.to(device or self._execution_device, dtype=self.capface.dtype)

    # ------------------------------------------------------------------ the algorithm
    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str],
        hint,
        id_embedding: torch.Tensor,
        image_embeds: torch.Tensor | None = None,
        face_image: Image.Image | None = None,
        negative_prompt: str | list[str] = "",
        num_images: int = 1,
        num_inference_steps: int = 20,
        guidance_scale: float = 7.0,
        strength: float = 1.0,
        tau: int = 0,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "pil",
        callback: Callable[[int, int, torch.Tensor], None] | None = None,
    ) -> CapHumanOutput:
        """Generate ``num_images`` portraits.

        Args:
            prompt / negative_prompt: text for the conditional / unconditional UNet branch ("" by default,
                encoded as the 77-token empty string, not zeros); or a list of ``num_images`` texts, one per image.
            hint: 9-channel render (9, H, W) or (1, 9, H, W), raw values, H = W = output size; or
                (num_images, 9, H, W), one per image.
            id_embedding: (1, 512) or (N, 512) L2-normalised FaceNet embedding.
            image_embeds: (1, 257, 1024) or (N, 257, 1024) CLIP-vision tokens of the face-only image; or pass
                ``face_image``.
            num_images: 1-8 images per call (different initial noise; the same conditioning unless per-image
                prompts / hints / identities are given).
            guidance_scale: g in eps = eps_u + g (eps_c - eps_u); the uncond branch is skipped only at g == 1.
            strength: CapFace residual scale (all 13). tau: CapFace context is zeroed for t > tau (0 = never).
            eta: DDIM eta (ignored by schedulers without it). generator: seeds the initial noise (and eta noise).
            output_type: "pil", "np" (uint8 N×H×W×3) or "latent".
            callback: ``callback(step_index, timestep, latents)`` after every step.
        """
        device = self._execution_device  # once: diffusers finds it by walking every module (~10 ms on a CPU)
        if not 1 <= num_images <= 8:
            raise ValueError(f"num_images must be in 1..8, got {num_images}")
        do_cfg = guidance_scale != 1.0

        # 1. Text context of the UNet: cond = prompt, uncond = negative prompt; one row per image.
        cond_text = self._text_rows(prompt, num_images, "prompt", device)
        uncond_text = self._text_rows(negative_prompt, num_images, "negative_prompt", device) if do_cfg else None

        # 2. CapFace context: [257 projected CLIP-vision tokens, 1 projected id token], same for both branches.
        if image_embeds is None:
            if face_image is None:
                raise ValueError("pass image_embeds or face_image")
            image_embeds = self.encode_face_image(face_image, device)
        id_embedding = torch.as_tensor(id_embedding).to(device)
        image_embeds = image_embeds.to(device)
        context = self.capface.encode_context(image_embeds, id_embedding)
        context = context.expand(num_images, -1, -1) if context.shape[0] == 1 else context
        if context.shape[0] != num_images:
            raise ValueError(f"id_embedding/image_embeds batch must be 1 or num_images={num_images}")

        # 3. Hint embedding + face mask, once per call (one per image for per-image hints).
        hint = self.prepare_hint(hint, device=device)
        if hint.shape[0] not in (1, num_images):
            raise ValueError(f"hint batch must be 1 or num_images={num_images}, got {hint.shape[0]}")
        guided_hint, mask = self.capface.embed_hint(hint)
        guided_hint = guided_hint.expand(num_images, -1, -1, -1)

        # 4. Timesteps and initial noise (N, 4, H/8, W/8).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        size = hint.shape[-1] // self.vae_scale_factor
        shape = (num_images, self.unet.config.in_channels, size, size)
        # The sampler state stays fp32 whatever the models run in (fp16/bf16 would round x_t at every
        # step); only the models' inputs are cast. The noise is drawn in the models' dtype, as before.
        # (CPU, tiny model, bf16, 64², 20 DDIM steps: pixels within 1 level of fp32 56.7 % -> 68.8 %.)
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=self.unet.dtype)
        else:
            latents = latents.to(device, dtype=self.unet.dtype)
        latents = latents.float() * self.scheduler.init_noise_sigma
        step_kwargs = self._step_kwargs(generator, eta)

        # 5. Denoising loop.
        text = torch.cat([uncond_text, cond_text]) if do_cfg else cond_text
        timesteps = self.scheduler.timesteps
        with self.progress_bar(total=len(timesteps)) as progress:
            for i, t in enumerate(timesteps):
                x_in = self.scheduler.scale_model_input(latents, t).to(self.unet.dtype)
                # CapFace once: identical inputs for both branches; context zeroed for t > tau.
                down, mid = self.capface(x_in, t, context * tau_gate(t, tau), guided_hint)
                down, mid = gate_residuals(down, mid, mask, strength)
                if do_cfg:
                    x_in = torch.cat([x_in, x_in])
                    down, mid = [torch.cat([r, r]) for r in down], torch.cat([mid, mid])
                eps = self.unet(
                    x_in, t, encoder_hidden_states=text,
                    down_block_additional_residuals=down, mid_block_additional_residual=mid,
                ).sample
                eps = eps.float()
                if do_cfg:
                    eps_u, eps_c = eps.chunk(2)
                    eps = eps_u + guidance_scale * (eps_c - eps_u)
                latents = self.scheduler.step(eps, t, latents, **step_kwargs).prev_sample
                if callback is not None:
                    callback(i, int(t), latents)
                progress.update()

        # 6. Decode.
        if output_type == "latent":
            images = latents
        else:
            images = self.decode_latents(latents)
            if output_type == "pil":
                images = [Image.fromarray(im) for im in images]
        self.maybe_free_model_hooks()
        return CapHumanOutput(images=images, mask=mask)

    # ------------------------------------------------------------------ helpers
    def _text_rows(self, text: str | list[str], num_images: int, name: str, device=None) -> torch.Tensor:
        """(num_images, 77, D) text context: one text for every image, or one per image (each distinct
        text encoded once, alone, so a row never depends on the other texts of the batch)."""
        if isinstance(text, str):
            return self.encode_text(text, device).expand(num_images, -1, -1)
        texts = list(text)
        if len(texts) != num_images:
            raise ValueError(f"{name} must be one text or a list of num_images={num_images}, got {len(texts)}")
        encoded = {t: self.encode_text(t, device) for t in dict.fromkeys(texts)}
        return torch.cat([encoded[t] for t in texts])

    def _step_kwargs(self, generator, eta: float) -> dict:
        params = set(inspect.signature(self.scheduler.step).parameters)
        kwargs = {}
        if "eta" in params:
            kwargs["eta"] = eta
        if "generator" in params:
            kwargs["generator"] = generator
        return kwargs

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> np.ndarray:
        """latents / scaling_factor -> VAE -> x * 127.5 + 127.5, clipped, truncated to uint8 (N, H, W, 3).

        An fp16 VAE is first upcast to fp32 (once, in place): the SD VAE decoder overflows in fp16.
        fp32 and bf16 VAEs decode as they are."""
        want = decode_dtype(self.vae.dtype)
        if self.vae.dtype != want:
            self.vae.to(dtype=want)
        x = self.vae.decode(latents.to(self.vae.dtype) / self.vae.config.scaling_factor).sample
        x = (x.float() * 127.5 + 127.5).clamp(0, 255)
        return x.permute(0, 2, 3, 1).cpu().numpy().astype(np.uint8)
