"""Write a small random LoRA for the tiny CapHuman model's UNet (tests and smoke runs).

    python -m caphuman.testing.tiny_lora --model DIR --out FILE.safetensors [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


#: Where LCM-LoRA (SD1.5) puts its adapters, and its rank: the defaults of diffusers' LCM-LoRA distillation
#: script (attention, feed-forward and projection layers, every resnet convolution, up/down-samplers and the
#: time-embedding projections of the resnets), rank 64. Used to time a LoRA of the real one's cost.
LCM_LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
                    "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj")
LCM_LORA_RANK = 64


def random_lora_state_dict(unet, rank: int = 4, targets=LCM_LORA_TARGETS, seed: int = 0, std: float = 0.01) -> dict:
    """A random LoRA for ``unet`` (any size, nothing is copied or modified): ``lora_A``/``lora_B`` for
    every Linear/Conv2d whose name ends with one of ``targets``, in the PEFT key layout
    (``unet.<module>.lora_A.weight``) that ``load_lora_weights`` accepts. Small values (``std``), so
    outputs stay finite in fp16; float32 on the CPU."""
    import torch
    from torch import nn

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, module in unet.named_modules():
        if not name.endswith(tuple(targets)) or not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        if isinstance(module, nn.Linear):
            a, b = (rank, module.in_features), (module.out_features, rank)
        else:
            a, b = (rank, module.in_channels, *module.kernel_size), (module.out_channels, rank, 1, 1)
        sd[f"unet.{name}.lora_A.weight"] = torch.randn(a, generator=g) * std
        sd[f"unet.{name}.lora_B.weight"] = torch.randn(b, generator=g) * std
    return sd


def write_tiny_lora(model_dir: str | Path, out_file: str | Path, seed: int = 0, rank: int = 4) -> Path:
    """A rank-``rank`` LoRA on the UNet attention projections, non-zero (random B and A), saved in
    the diffusers LoRA format that ``load_lora_weights`` reads."""
    import torch
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    torch.manual_seed(seed)
    unet = UNet2DConditionModel.from_pretrained(Path(model_dir) / "unet")
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    layers = convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        StableDiffusionPipeline.save_lora_weights(tmp, unet_lora_layers=layers)
        shutil.move(str(Path(tmp) / "pytorch_lora_weights.safetensors"), out_file)
    return out_file


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="tiny model folder (python -m caphuman.testing.tiny_model)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    print(write_tiny_lora(args.model, args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
