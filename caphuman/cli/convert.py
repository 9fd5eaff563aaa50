"""``python -m caphuman convert``: original caphuman.ckpt + SD1.5 backbone -> diffusers folder."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--caphuman-ckpt", default=None,
                        help="CapHuman checkpoint (default: checkpoints/caphuman/caphuman.ckpt)")
    parser.add_argument("--backbone", default=None,
                        help="SD1.5-family backbone: .safetensors/.ckpt file or a diffusers folder/repo "
                             "(default: checkpoints/backbone/Realistic_Vision_V3.0.ckpt)")
    parser.add_argument("--vae", default=None, help="VAE override: file (ldm layout) or diffusers folder/repo")
    parser.add_argument("--original-config", default=None,
                        help="model yaml in the original cldm_v15.yaml format (default: the SD1.5 CapHuman config)")
    parser.add_argument("--clip", default=None,
                        help="CLIP folder/repo for tokenizer, image processor and tower configs "
                             "(default: checkpoints/clip-vit-large-patch14 or openai/clip-vit-large-patch14)")
    parser.add_argument("--identity", default=None, help="identity-encoder folder (identity.json) to copy along")
    parser.add_argument("--half", action="store_true", help="store weights in float16")
    parser.add_argument("--out", required=True, help="output diffusers folder")


def run(args) -> int:
    from caphuman.diffusion.convert import convert_caphuman
    from caphuman.errors import MissingWeightsError
    from caphuman.weights.registry import local_path

    ckpt = args.caphuman_ckpt or local_path("caphuman")
    backbone = args.backbone or local_path("backbone")
    for what, path, key in (("CapHuman checkpoint", ckpt, "caphuman"), ("backbone", backbone, "backbone")):
        if (args.caphuman_ckpt if key == "caphuman" else args.backbone) is None and not path.exists():
            raise MissingWeightsError(f"{what} not found at {path}; run `python -m caphuman download {key}` "
                                      f"or pass --{'caphuman-ckpt' if key == 'caphuman' else 'backbone'}")
    result = convert_caphuman(ckpt, args.out, backbone=backbone, vae=args.vae, original_config=args.original_config,
                              clip=args.clip, identity=args.identity, half=args.half)
    if not result.complete:
        print("warning: some checkpoint keys were not used (listed above as UNUSED)")
    return 0
