"""CapFace: the identity- and head-conditioned control network of CapHuman.

Structure (reference §2): a diffusers :class:`~diffusers.ControlNetModel` trunk with a 9-channel
hint input, plus

* ``mask_head``: Conv2d(C0 -> 1, 3x3, padding 1) + Sigmoid on the hint embedding (C0 = first block
  width, 320 for SD1.5); the predicted face mask gates the residuals (see :mod:`.gating`);
* ``id_linear`` (512 -> D) and ``img_linear`` (1024 -> D), D = cross-attention width (768), which
  build CapFace's own cross-attention context: [257 projected CLIP-vision tokens, 1 projected
  FaceNet token] -> (B, 258, D). The UNet never sees this context.

The hint embedding and the mask depend only on the hint, so :meth:`CapFaceModel.embed_hint` is
meant to run once per generation and :meth:`CapFaceModel.forward` takes its output.
"""

from __future__ import annotations

import torch
from diffusers import ControlNetModel
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from diffusers.utils.accelerate_utils import apply_forward_hook
from torch import nn

#: Number of residuals CapFace hands to an SD1.5 UNet: 12 skip connections + 1 middle block.
NUM_RESIDUALS = 13


class CapFaceModel(ModelMixin, ConfigMixin):
    """CapFace control network (diffusers layout: ``config.json`` + ``diffusion_pytorch_model.safetensors``).

    Defaults are the SD1.5 sizes of the released checkpoint; every width is configurable so tests
    can build tiny models. State-dict names: ``controlnet.*`` (diffusers ControlNet names),
    ``mask_head.0.*``, ``id_linear.*``, ``img_linear.*``.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 4,
        conditioning_channels: int = 9,
        block_out_channels: tuple[int, ...] = (320, 640, 1280, 1280),
        down_block_types: tuple[str, ...] = (
            "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        layers_per_block: int = 2,
        attention_head_dim: int | tuple[int, ...] = 8,
        cross_attention_dim: int = 768,
        norm_num_groups: int = 32,
        use_linear_projection: bool = False,
        transformer_layers_per_block: int = 1,
        conditioning_embedding_out_channels: tuple[int, ...] = (16, 32, 96, 256),
        id_embedding_dim: int = 512,
        image_embedding_dim: int = 1024,
    ):
        super().__init__()
        self.controlnet = ControlNetModel(
            in_channels=in_channels,
            conditioning_channels=conditioning_channels,
            block_out_channels=tuple(block_out_channels),
            down_block_types=tuple(down_block_types),
            layers_per_block=layers_per_block,
            attention_head_dim=attention_head_dim,
            cross_attention_dim=cross_attention_dim,
            norm_num_groups=norm_num_groups,
            use_linear_projection=use_linear_projection,
            transformer_layers_per_block=transformer_layers_per_block,
            conditioning_embedding_out_channels=tuple(conditioning_embedding_out_channels),
        )
        self.mask_head = nn.Sequential(nn.Conv2d(block_out_channels[0], 1, kernel_size=3, padding=1), nn.Sigmoid())
        self.id_linear = nn.Linear(id_embedding_dim, cross_attention_dim)
        self.img_linear = nn.Linear(image_embedding_dim, cross_attention_dim)

    # ------------------------------------------------------------------ conditioning (once per call)
    # (apply_forward_hook: these entry points onload the model under enable_model_cpu_offload, like forward)
    @apply_forward_hook
    def encode_context(self, image_embeds: torch.Tensor, id_embedding: torch.Tensor) -> torch.Tensor:
        """CapFace cross-attention context.

        ``image_embeds``: (B, 257, 1024) CLIP-vision ``last_hidden_state``; ``id_embedding``: (B, 512)
        or (B, 1, 512) L2-normalised FaceNet embedding. Returns (B, 258, D): image tokens, then the id token.
        """
        if id_embedding.ndim == 2:
            id_embedding = id_embedding[:, None, :]
        dtype = self.img_linear.weight.dtype
        image_tokens = self.img_linear(image_embeds.to(dtype))
        id_token = self.id_linear(id_embedding.to(dtype))
        return torch.cat([image_tokens, id_token], dim=1)

    @apply_forward_hook
    def embed_hint(self, hint: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hint embedding and predicted face mask.

        ``hint``: (B, 9, H, W) raw render values (no re-normalisation). Returns ``(guided_hint,
        mask)``: (B, C0, H/8, W/8) and (B, 1, H/8, W/8) in (0, 1). Both are independent of t and context.
        """
        guided_hint = self.controlnet.controlnet_cond_embedding(hint.to(self.dtype))
        return guided_hint, self.mask_head(guided_hint)

    # ------------------------------------------------------------------ per step
    def forward(
        self,
        sample: torch.Tensor,
        timestep: torch.Tensor | int,
        context: torch.Tensor,
        guided_hint: torch.Tensor,
    ) -> tuple[list[torch.Tensor], torch.Tensor]:
        """Run the trunk with a precomputed hint embedding.

        ``sample``: (B, 4, h, w) latent x_t; ``timestep``: integer DDPM timestep (scalar or (B,));
        ``context``: (B, 258, D); ``guided_hint``: output of :meth:`embed_hint` (batch 1 or B).
        Returns ``(down_residuals, mid_residual)``: 12 + 1 unscaled, ungated residuals, the same
        tensors ``ControlNetModel.forward(..., conditioning_scale=1.0)`` returns for the raw hint.
        """
        cn = self.controlnet
        if not torch.is_tensor(timestep):
            timestep = torch.tensor([timestep], dtype=torch.int64, device=sample.device)
        elif timestep.ndim == 0:
            timestep = timestep[None].to(sample.device)
        timestep = timestep.expand(sample.shape[0])
        emb = cn.time_embedding(cn.time_proj(timestep).to(dtype=sample.dtype))

        h = cn.conv_in(sample) + guided_hint
        skips = [h]
        for block in cn.down_blocks:
            if getattr(block, "has_cross_attention", False):
                h, res = block(hidden_states=h, temb=emb, encoder_hidden_states=context)
            else:
                h, res = block(hidden_states=h, temb=emb)
            skips.extend(res)
        h = cn.mid_block(h, emb, encoder_hidden_states=context)

        down = [zero_conv(s) for s, zero_conv in zip(skips, cn.controlnet_down_blocks)]
        return down, cn.controlnet_mid_block(h)
