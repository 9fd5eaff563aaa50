"""Component widths: the SD1.5 sizes of the released model and the tiny sizes of the tests.

``ModelSizes.sd15().original_yaml()`` is the original ``cldm_v15.yaml`` model section (used by
``convert`` when no ``--original-config`` is given); ``ModelSizes.tiny()`` is the test model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ModelSizes:
    """Widths of every component. ``tiny()`` for tests, ``sd15()`` for full-size random benchmarks."""

    unet_channels: tuple[int, ...] = (32, 64)
    unet_attention: tuple[int, ...] = (1, 2)  # ldm attention_resolutions (downsampling factors)
    layers_per_block: int = 2
    num_heads: int = 2
    context_dim: int = 32
    vae_ch: int = 32
    vae_mult: tuple[int, ...] = (1, 1, 1, 1)
    vae_res_blocks: int = 1
    text: dict = field(default_factory=lambda: dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                                                    num_attention_heads=4, max_position_embeddings=77))
    vision: dict = field(default_factory=lambda: dict(hidden_size=48, intermediate_size=37, num_hidden_layers=2,
                                                      num_attention_heads=4, image_size=32, patch_size=8))
    id_dim: int = 512

    @classmethod
    def tiny(cls) -> "ModelSizes":
        return cls()

    @classmethod
    def sd15(cls) -> "ModelSizes":
        return cls(unet_channels=(320, 640, 1280, 1280), unet_attention=(1, 2, 4), layers_per_block=2, num_heads=8,
                   context_dim=768, vae_ch=128, vae_mult=(1, 2, 4, 4), vae_res_blocks=2,
                   text=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                             max_position_embeddings=77),
                   vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24,
                               num_attention_heads=16, image_size=224, patch_size=14))

    # diffusers configs -------------------------------------------------------
    def _block_types(self):
        down, res = [], 1
        for i in range(len(self.unet_channels)):
            down.append("CrossAttnDownBlock2D" if res in self.unet_attention else "DownBlock2D")
            res *= 2 if i < len(self.unet_channels) - 1 else 1
        up = [t.replace("Down", "Up") for t in reversed(down)]
        return tuple(down), tuple(up)

    def unet_config(self) -> dict:
        down, up = self._block_types()
        return dict(sample_size=64, in_channels=4, out_channels=4, block_out_channels=self.unet_channels,
                    down_block_types=down, up_block_types=up, layers_per_block=self.layers_per_block,
                    attention_head_dim=self.num_heads, cross_attention_dim=self.context_dim)

    def capface_config(self) -> dict:
        down, _ = self._block_types()
        return dict(block_out_channels=self.unet_channels, down_block_types=down,
                    layers_per_block=self.layers_per_block, attention_head_dim=self.num_heads,
                    cross_attention_dim=self.context_dim, id_embedding_dim=self.id_dim,
                    image_embedding_dim=self.vision["hidden_size"])

    def vae_config(self) -> dict:
        chans = tuple(self.vae_ch * m for m in self.vae_mult)
        return dict(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=chans,
                    down_block_types=("DownEncoderBlock2D",) * len(chans),
                    up_block_types=("UpDecoderBlock2D",) * len(chans),
                    layers_per_block=self.vae_res_blocks, scaling_factor=0.18215, sample_size=512)

    def original_yaml(self) -> str:
        """Model config in the original ``cldm_v15.yaml`` format with these sizes."""
        def unet_params(extra: str) -> str:
            return (f"""        image_size: 32
        in_channels: 4
        model_channels: {self.unet_channels[0]}
        attention_resolutions: {list(self.unet_attention)}
        num_res_blocks: {self.layers_per_block}
        channel_mult: {[c // self.unet_channels[0] for c in self.unet_channels]}
        num_heads: {self.num_heads}
        use_spatial_transformer: True
        transformer_depth: 1
        context_dim: {self.context_dim}
        use_checkpoint: True
        legacy: False
{extra}""")
        return f"""model:
  target: cldm.cldm.ControlLDM
  params:
    linear_start: 0.00085
    linear_end: 0.012
    num_timesteps_cond: 1
    log_every_t: 200
    timesteps: 1000
    first_stage_key: "jpg"
    cond_stage_key: "txt"
    control_key: "hint"
    image_size: 64
    channels: 4
    cond_stage_trainable: false
    conditioning_key: crossattn
    monitor: val/loss_simple_ema
    scale_factor: 0.18215
    use_ema: False
    only_mid_control: False

    control_stage_config:
      target: cldm.cldm.ControlNet
      params:
        hint_channels: 9
{unet_params("")}
    unet_config:
      target: cldm.cldm.ControlledUnetModel
      params:
        out_channels: 4
{unet_params("")}
    first_stage_config:
      target: ldm.models.autoencoder.AutoencoderKL
      params:
        embed_dim: 4
        monitor: val/rec_loss
        ddconfig:
          double_z: true
          z_channels: 4
          resolution: 256
          in_channels: 3
          out_ch: 3
          ch: {self.vae_ch}
          ch_mult: {list(self.vae_mult)}
          num_res_blocks: {self.vae_res_blocks}
          attn_resolutions: []
          dropout: 0.0
        lossconfig:
          target: torch.nn.Identity

    cond_stage_config:
      target: ldm.modules.encoders.modules.FrozenCLIPEmbedder
"""
