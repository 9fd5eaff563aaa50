"""diffusers -> original (ldm / cldm) parameter names, for writing test checkpoints in the ORIGINAL layout.

This is the inverse of ``diffusers.loaders.single_file_utils`` converters for the SD1.5 family
(UNet, ControlNet, VAE). The round-trip test (tiny model -> ldm layout -> ``convert`` -> strict load,
bit-identical tensors) checks both directions against diffusers' own converters.
"""

from __future__ import annotations

import re

_RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
           ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def unet_key_to_ldm(key: str, layers_per_block: int, up_attention_blocks: set[int] | None = None) -> str:
    """UNet2DConditionModel / ControlNetModel trunk name -> ldm ``UNetModel`` name (no prefix)."""
    L = layers_per_block
    fixed = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
    for new, old in fixed.items():
        if key.startswith(new + "."):
            return old + key[len(new):]
    m = re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = 1 + b * (L + 1) + j
        return f"input_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"input_blocks.{idx}.1.{rest}"
    m = re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", key)
    if m:
        return f"input_blocks.{(int(m[1]) + 1) * (L + 1)}.0.op.{m[2]}"
    m = re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        if m[1] == "resnets":
            return f"middle_block.{2 * int(m[2])}.{_resnet(m[3])}"
        return f"middle_block.1.{m[3]}"
    m = re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.*)", key)
    if m:
        b, kind, j, rest = int(m[1]), m[2], int(m[3]), m[4]
        idx = b * (L + 1) + j  # decoder levels have L + 1 layers
        return f"output_blocks.{idx}.0.{_resnet(rest)}" if kind == "resnets" else f"output_blocks.{idx}.1.{rest}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", key)
    if m:
        b = int(m[1])
        idx = b * (L + 1) + L
        slot = 2 if up_attention_blocks and b in up_attention_blocks else 1
        return f"output_blocks.{idx}.{slot}.conv.{m[2]}"
    raise KeyError(key)


def unet_state_dict_to_ldm(unet) -> dict:
    """``UNet2DConditionModel`` state dict in ldm names (without the ``model.diffusion_model.`` prefix)."""
    cfg = unet.config
    up_attn = {i for i, t in enumerate(cfg.up_block_types) if "CrossAttn" in t}
    return {unet_key_to_ldm(k, cfg.layers_per_block, up_attn): v for k, v in unet.state_dict().items()}


def controlnet_state_dict_to_ldm(controlnet) -> dict:
    """``ControlNetModel`` state dict in cldm ``ControlNet`` names (without ``control_model.``)."""
    out = {}
    n_blocks = len(controlnet.controlnet_cond_embedding.blocks)
    for k, v in controlnet.state_dict().items():
        m = re.match(r"controlnet_cond_embedding\.(conv_in|conv_out|blocks\.(\d+))\.(.*)", k)
        if m:
            idx = 0 if m[1] == "conv_in" else (2 * (n_blocks + 1) if m[1] == "conv_out" else 2 * (int(m[2]) + 1))
            out[f"input_hint_block.{idx}.{m[3]}"] = v
        elif k.startswith("controlnet_down_blocks."):
            i, rest = k.split(".", 2)[1:]
            out[f"zero_convs.{i}.0.{rest}"] = v
        elif k.startswith("controlnet_mid_block."):
            out["middle_block_out.0." + k.split(".", 1)[1]] = v
        else:
            out[unet_key_to_ldm(k, controlnet.config.layers_per_block)] = v
    return out


def vae_state_dict_to_ldm(vae) -> dict:
    """``AutoencoderKL`` state dict in ldm ``AutoencoderKL`` names (no prefix); attention linears -> 1x1 convs."""
    n = len(vae.config.block_out_channels)
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in vae.state_dict().items():
        new = k
        m = re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(group_norm|to_q|to_k|to_v|to_out\.0)\.(.*)", k)
        if m:
            new = f"{m[1]}.mid.attn_1.{attn[m[2]]}.{m[3]}"
            if m[2] != "group_norm" and v.ndim == 2:
                v = v[:, :, None, None]
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.*)", k):
            new = f"{m[1]}.mid.block_{int(m[2]) + 1}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            new = f"encoder.down.{m[1]}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.*)", k):
            new = f"encoder.down.{m[1]}.downsample.conv.{m[2]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", k):
            new = f"decoder.up.{n - 1 - int(m[1])}.block.{m[2]}.{m[3]}"
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.*)", k):
            new = f"decoder.up.{n - 1 - int(m[1])}.upsample.conv.{m[2]}"
        elif m := re.match(r"(encoder|decoder)\.conv_norm_out\.(.*)", k):
            new = f"{m[1]}.norm_out.{m[2]}"
        new = new.replace("conv_shortcut", "nin_shortcut")
        out[new] = v
    return out
