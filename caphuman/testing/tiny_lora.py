"""Write a small random LoRA for the tiny CapHuman model's UNet (tests and smoke runs).

    python -m caphuman.testing.tiny_lora --model DIR --out FILE.safetensors [--seed N]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


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
