"""Generation benchmark: our pipeline vs an original-style loop, plus the fast preset.

    python benchmarks/generate.py --json                     # (a) CPU, tiny random model: plumbing cost (< 1 min)
    python benchmarks/generate.py --full-size-random --json  # (b) CUDA, SD1.5-sized random models, 512², 20 DDIM
                                                             #     steps, guidance 7, warm: ours (fp16, SDPA,
                                                             #     channels-last; --compile) vs original-style (fp32,
                                                             #     two passes, CapFace in each) in the same run;
                                                             #     then the fast preset (LCM scheduler, 4 steps,
                                                             #     guidance 1, a random LoRA of LCM-LoRA's size)

Speed does not depend on weight values, so random weights measure the real cost. Every timing is warm and
covers one full image: text encoding, CapFace context, sampling and VAE decode (the CLIP-vision tokens are
passed in, for both loops). Reports seconds per image, it/s, peak VRAM (CUDA, torch.cuda.max_memory_allocated
during the timed runs), the speed-up, and the targets with pass/fail flags (null in the CPU tiny mode,
where they do not apply). ``--full-size-random --device cpu`` runs the full-size code path on the CPU as a
logic check (timings meaningless; use a small --size and --steps).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from common import PROMPT, add_random_fast_lora, conditioning, device_label, flag as _flag, measure as _measure  # noqa: E402

#: Targets on one CUDA GPU (issue 8, item 4), full-size models at 512², 20 steps, guidance 7.
TARGETS = {"ours_s_per_image_max": 0.4, "speedup_vs_original_style_min": 4.0, "fast_s_per_image_max": 0.12,
           "peak_vram_gb_max_fp16": 6.0}


def run(full_size: bool, device: str, steps: int, size: int, repeats: int, compile: bool, compile_mode,
        channels_last, fast_steps: int) -> dict:
    import diffusers
    import torch

    from caphuman.diffusion.acceleration import Acceleration, configure_pipeline
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.diffusion.presets import FAST
    from caphuman.diffusion.reference_loop import original_style_latents
    from caphuman.diffusion.schedulers import make_scheduler
    from caphuman.testing.tiny_model import ModelSizes, build_components

    sizes = ModelSizes.sd15() if full_size else ModelSizes.tiny()
    pipe = CapHumanPipeline(**build_components(sizes, seed=0))
    pipe.set_progress_bar_config(disable=True)
    cond = conditioning(sizes, size)
    hint, id_emb, img = cond["hint"], cond["id_embedding"], cond["image_embeds"]
    guidance = 7.0
    result = {"device": device_label(device),
              "torch": torch.__version__, "diffusers": diffusers.__version__, "python": platform.python_version(),
              "model": "sd15-random" if full_size else "tiny-random", "size": size, "steps": steps,
              "guidance": guidance, "num_images": 1}
    warmup = 2 if compile else 1

    # ---- original-style loop: fp32, cond and uncond as separate passes, CapFace (hint embedding included)
    # ---- in each, then the fp32 VAE decode
    pipe.to(device)  # built in fp32; diffusers' default attention (SDPA) as the original's would be today

    def original():
        lat = original_style_latents(pipe, PROMPT, hint, id_emb, img, num_inference_steps=steps,
                                     guidance_scale=guidance, generator=torch.Generator(device).manual_seed(0))
        return pipe.decode_latents(lat)

    result["original_style_fp32"] = _measure(original, device, repeats, 1, steps)

    # ---- ours: configured by the same code as the CLI and the studio
    accel = Acceleration.for_device(device, "auto", channels_last=channels_last, compile=compile,
                                    compile_mode=compile_mode)
    configure_pipeline(pipe, accel)
    result["acceleration"] = accel.describe()

    def ours(num_steps=steps, g_scale=guidance):
        return pipe(PROMPT, hint, id_emb, image_embeds=img, num_inference_steps=num_steps, guidance_scale=g_scale,
                    output_type="np", generator=torch.Generator(device).manual_seed(0)).images

    key = f"ours_{accel.dtype}"
    result[key] = _measure(ours, device, repeats, warmup, steps)
    speedup = round(result["original_style_fp32"]["s_per_image"] / result[key]["s_per_image"], 2)
    result["speedup_vs_original_style"] = speedup

    # ---- the fast preset: LCM scheduler, few steps, guidance 1, a random LoRA of LCM-LoRA's rank and layers
    fast = {"scheduler": "lcm", "steps": fast_steps, "guidance": FAST.guidance}
    try:
        import peft  # noqa: F401
    except ImportError:
        fast["skipped"] = "peft is not installed"
    else:
        from caphuman.diffusion.lora import fuse_fast_lora

        fast.update(add_random_fast_lora(pipe, full_size))
        pipe.scheduler = make_scheduler("lcm")
        run_fast = lambda: ours(fast_steps, FAST.guidance)  # noqa: E731
        fast["adapter"] = _measure(run_fast, device, repeats, warmup, fast_steps)  # as the studio runs it
        fuse_fast_lora(pipe)
        fast["fused"] = _measure(run_fast, device, repeats, warmup, fast_steps)  # as `generate --preset fast` runs it
        fast["s_per_image"] = fast["fused"]["s_per_image"]
    result["fast_preset"] = fast

    # ---- targets
    applies = full_size and device == "cuda" and steps == 20 and size == 512
    peak = result[key].get("peak_vram_gb")
    result["targets"] = TARGETS
    result["pass"] = {
        "ours_s_per_image": _flag(result[key]["s_per_image"], TARGETS["ours_s_per_image_max"]) if applies else None,
        "speedup_vs_original_style": _flag(speedup, TARGETS["speedup_vs_original_style_min"], at_most=False)
        if applies else None,
        "fast_s_per_image": _flag(fast.get("s_per_image"), TARGETS["fast_s_per_image_max"]) if applies else None,
        "fast_adapter_s_per_image": _flag(fast.get("adapter", {}).get("s_per_image"),
                                          TARGETS["fast_s_per_image_max"]) if applies else None,
        "peak_vram_fp16": _flag(peak, TARGETS["peak_vram_gb_max_fp16"]) if applies and accel.dtype == "fp16" else None,
    }
    result["note"] = ("timings cover text encoding, CapFace context, sampling and VAE decode; fast_preset.fused "
                      "is the CLI's path (LoRA merged), .adapter the studio's (LoRA switchable)"
                      + ("" if applies else "; targets apply to --full-size-random on CUDA at 512², 20 steps"))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--full-size-random", action="store_true", help="SD1.5-sized random models (CUDA)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="auto: cuda with --full-size-random (required), else cpu")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    p.add_argument("--fast-steps", type=int, default=4, help="steps of the fast preset (default 4)")
    p.add_argument("--size", type=int, default=None, help="default: 512 full size, 64 tiny")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet and CapFace (ours and fast)")
    p.add_argument("--compile-mode", default=None,
                   help="torch.compile mode, e.g. max-autotune-no-cudagraphs, reduce-overhead (default: torch's)")
    p.add_argument("--no-channels-last", action="store_true", help="keep NCHW on CUDA")
    args = p.parse_args(argv)
    import torch

    device = args.device
    if device == "auto":
        device = "cuda" if args.full_size_random else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("benchmarks/generate.py: --full-size-random needs a CUDA GPU and none is visible "
                         f"(torch {torch.__version__}, cuda build: {torch.version.cuda}); run without it for the CPU "
                         "tiny benchmark, or add --device cpu for a (slow, untimed) logic check")
    torch.set_grad_enabled(False)
    res = run(args.full_size_random, device, args.steps, args.size or (512 if args.full_size_random else 64),
              args.repeats, args.compile, args.compile_mode, False if args.no_channels_last else None, args.fast_steps)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
