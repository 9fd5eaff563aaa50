"""``python -m caphuman generate``: portraits from a reference photo, a prompt and head controls.

Writes OUT.png (or OUT_0.png, OUT_1.png, ... for several images) and OUT.json with every parameter
and the seed, so a result can be reproduced. Each image is checked (:mod:`caphuman.face.output_check`):
OUT.json's ``checks`` and one stdout line per image give the pose asked for, the pose estimated from
the image (or why none) and the identity similarity to the reference (or why none).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from caphuman.cli.head_args import add_head_arguments, add_reference_arguments, state_from_args
from caphuman.errors import InputError
from caphuman.validation import MAX_SEED


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--weights", default=None,
                        help="converted CapHuman folder or Hub repo id (default: checkpoints/caphuman-diffusers, "
                             "then $CAPHUMAN_WEIGHTS_REPO from the Hub cache)")
    add_reference_arguments(parser, required=True)
    parser.add_argument("--prompt", required=True, help="text prompt")
    parser.add_argument("--added-prompt", default="", help='appended as "PROMPT, ADDED" when non-empty')
    parser.add_argument("--negative-prompt", default="", help="negative prompt (default: empty)")
    add_head_arguments(parser)
    parser.add_argument("--hint", default=None,
                        help="precomputed 9-channel hint (.npy, (9, S, S)) instead of rendering the head")
    parser.add_argument("--seed", type=int, default=12345,
                        help="random seed, 0..4294967295; -1 draws one (default 12345)")
    parser.add_argument("--preset", choices=("original", "fast"), default="original",
                        help="original: DDIM, 20 steps, guidance 7 (default); fast: LCM-LoRA + LCM scheduler, "
                             "4 steps, guidance 1 (needs `python -m caphuman download fast`)")
    parser.add_argument("--steps", type=int, default=None,
                        help="sampling steps, 1..150 (default: the preset's, 20 / 4)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale, 0..30 (default: the preset's, 7 / 1)")
    parser.add_argument("--strength", type=float, default=1.0, help="CapFace strength, 0..2 (default 1)")
    parser.add_argument("--tau", type=int, default=0,
                        help="identity dropout, 0..1000: CapFace ignores identity for timesteps t > tau (0 = off)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM eta, 0..1 (default 0)")
    parser.add_argument("--num-images", type=int, default=1, help="images per run, 1..8 (default 1)")
    parser.add_argument("--size", type=int, default=512,
                        help="output side in pixels, a multiple of 64 in 64..1024 (default 512)")
    parser.add_argument("--scheduler", choices=("ddim", "dpmpp"), default=None,
                        help="sampler for the original preset (default ddim; the fast preset uses lcm)")
    parser.add_argument("--lora", default=None,
                        help="LoRA for the UNet/text encoder: a file in checkpoints/lora/, a path, or a Hub repo")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="LoRA scale, 0..2 (default 1)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="(default auto)")
    parser.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="auto: fp16 on CUDA, fp32 on CPU")
    parser.add_argument("--cpu-offload", action="store_true", help="CUDA: keep idle models on the CPU")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                        help="NHWC memory format for the UNet and CapFace (default: on with CUDA)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the UNet and CapFace (compiling takes a while: worth it for long runs)")
    parser.add_argument("--out", required=True, help="output PNG path")


# ---------------------------------------------------------------------------- seams
def _render_hint(args, size: int):
    """The 9-channel head hint (9, size, size) float32: the head fitted to ``--reference`` (and
    ``--pose-reference``/``--modes``), with the head-control flags applied on top — the same
    head ``preview --reference`` shows. Returns (hint, head state, output checker for that head)."""
    from caphuman.conditioning import reference_head
    from caphuman.head.resolve import load_head
    from caphuman.preview import HeadPreviewPipeline

    head = load_head(args.head)
    print(f"head: {head.description}", file=sys.stderr)
    pipeline = HeadPreviewPipeline(head.data)
    ref = reference_head(pipeline, args.reference, size, args.pose_reference, args.modes)
    state = state_from_args(args, base=ref.state)
    from caphuman.face.output_check import OutputChecker

    checker = OutputChecker(requested=state, target=pipeline, reference=ref.analysis)
    return pipeline.render(state, size, backdrop=ref.frame).hint, state, checker


def _load_hint(path: str, size: int):
    import numpy as np

    try:
        hint = np.load(path).astype(np.float32)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read hint {path}: {exc}") from None
    if hint.ndim == 4 and hint.shape[0] == 1:
        hint = hint[0]
    if hint.shape != (9, size, size):
        raise InputError(f"hint {path} has shape {hint.shape}, expected (9, {size}, {size})")
    return hint


def _open_image(path: str):
    """The reference as an RGB PIL image, through the shared intake (EXIF, RGBA, CMYK, 16-bit...)."""
    from PIL import Image

    from caphuman.face.intake import load_image

    return Image.fromarray(load_image(path))


def _acceleration(args):
    """Device, dtype and speed settings (one place for CLI, studio and benchmark: diffusion.acceleration)."""
    from caphuman.diffusion.acceleration import Acceleration

    return Acceleration.for_device(args.device, args.dtype, channels_last=args.channels_last,
                                   compile=args.compile, cpu_offload=args.cpu_offload)


def _output_paths(out: Path, n: int) -> list[Path]:
    return [out] if n == 1 else [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}") for i in range(n)]


#: flag -> the shared rule it follows (caphuman.validation.GENERATION_RULES; the studio uses the same).
NUMBER_FLAGS = {"seed": "seed", "steps": "steps", "guidance": "guidance", "strength": "strength", "tau": "tau",
                "eta": "eta", "num_images": "num_images", "size": "resolution", "lora_scale": "lora_scale"}


def check_numbers(args) -> None:
    """The prompts and every numeric flag through the shared rules: finite, in range, whole where it must be; refused
    (exit 2, one line naming the flag and its range) otherwise. Runs before anything is loaded."""
    from caphuman.validation import check_generation, check_prompt

    args.prompt = check_prompt(args.prompt, "--prompt")
    check_prompt(args.negative_prompt, "--negative-prompt", required=False)
    for attr, rule in NUMBER_FLAGS.items():
        if getattr(args, attr, None) is not None:
            setattr(args, attr, check_generation(rule, getattr(args, attr), "--" + attr.replace("_", "-")))


def run(args) -> int:
    from caphuman.diffusion import presets

    args.scheduler, args.steps, args.guidance = presets.resolve(args.preset, args.scheduler, args.steps,
                                                                args.guidance)
    check_numbers(args)
    if presets.uses_fast_lora(args.scheduler):
        presets.require_fast_lora()
    accel = _acceleration(args)
    from caphuman.weights.download import resolve_weights

    from caphuman.diffusion.loading import require_converted

    weights = require_converted(resolve_weights(args.weights))
    reference = _open_image(args.reference)
    state = checker = None
    if args.hint:
        hint = _load_hint(args.hint, args.size)
    else:
        hint, state, checker = _render_hint(args, args.size)

    import torch

    from caphuman.conditioning import identity_encoder_for
    from caphuman.diffusion.acceleration import configure_pipeline
    from caphuman.diffusion.loading import load_pipeline
    from caphuman.diffusion.schedulers import make_scheduler

    device, dtype_name = accel.device, accel.dtype
    seed = random.randint(0, MAX_SEED) if args.seed == -1 else args.seed
    t0 = time.perf_counter()
    pipe = load_pipeline(weights, accel.load_dtype())
    pipe.scheduler = make_scheduler(args.scheduler, like=pipe.scheduler)  # keeps the files' schedule
    if args.lora:
        from caphuman.diffusion.lora import apply_lora

        apply_lora(pipe, args.lora, args.lora_scale)
    if presets.uses_fast_lora(args.scheduler):
        from caphuman.diffusion.lora import apply_fast_lora, fuse_fast_lora

        apply_fast_lora(pipe, True)
        if not args.lora:  # one-shot run: merge it into the UNet weights (no per-layer LoRA cost)
            fuse_fast_lora(pipe)
    configure_pipeline(pipe, accel)
    identity = identity_encoder_for(weights, device=device)
    ident = identity.encode_identity(reference)
    load_s = time.perf_counter() - t0

    prompt = f"{args.prompt}, {args.added_prompt}" if args.added_prompt else args.prompt
    generator = torch.Generator(device=device).manual_seed(seed)
    t0 = time.perf_counter()
    out = pipe(prompt, hint, ident.id_embedding, face_image=ident.face_only_image,
               negative_prompt=args.negative_prompt, num_images=args.num_images, num_inference_steps=args.steps,
               guidance_scale=args.guidance, strength=args.strength, tau=args.tau, eta=args.eta,
               generator=generator, output_type="pil")
    gen_s = time.perf_counter() - t0

    out_path = Path(args.out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    paths = _output_paths(out_path, args.num_images)
    for image, path in zip(out.images, paths):
        image.save(path)
    params = {k: v for k, v in vars(args).items() if k != "func"}
    params.update(seed=seed, weights=str(weights), prompt_used=prompt, device=device, dtype=dtype_name,
                  acceleration=accel.describe(), head_state=state.to_dict() if state is not None else None)
    checks = _check_images(out.images, checker, reference, identity)
    sidecar = {"parameters": params, "images": [str(p) for p in paths],
               "checks": [{"image": str(p), **c.to_dict()} for p, c in zip(paths, checks)],
               "timings_s": {"load": round(load_s, 3), "generate": round(gen_s, 3)}}
    out_path.with_suffix(".json").write_text(json.dumps(sidecar, indent=2, default=str) + "\n")
    for p, c in zip(paths, checks):
        print(f"{p}  {c.summary()}")
    return 0


def _check_images(images, checker, reference, identity):
    """Pose and identity check of each image; with ``--hint`` there is no requested pose."""
    from caphuman.face.output_check import OutputChecker

    checker = checker or OutputChecker(reference=reference)
    checker.identity_encoder = identity
    return checker.check_all(images)
