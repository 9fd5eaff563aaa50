"""Generation benchmark.

    python benchmarks/generate.py --json                       # (a) CPU, tiny random model: plumbing cost
    python benchmarks/generate.py --full-size-random --json    # (b) CUDA, SD1.5-sized random models, 512², 20 steps,
                                                               #     guidance 7: our fp16 pipeline vs an original-style
                                                               #     loop (fp32, two passes, CapFace in each)

Speed does not depend on weight values, so random weights measure the real cost. Reports warm seconds per
image, it/s (denoising steps per second), peak VRAM (CUDA) and the speed-up over the original-style loop.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _timed(fn, device, repeats):
    import torch

    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times), sum(times) / len(times)


def run(full_size: bool, steps: int, size: int, repeats: int, compile_unet: bool, channels_last: bool) -> dict:
    import torch

    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.diffusion.reference_loop import original_style_latents
    from caphuman.testing.tiny_model import ModelSizes, build_components

    device = "cuda" if full_size else "cpu"
    if full_size and not torch.cuda.is_available():
        raise SystemExit("--full-size-random needs a CUDA GPU (none found); run without it for the CPU tiny benchmark")
    sizes = ModelSizes.sd15() if full_size else ModelSizes.tiny()
    comps = build_components(sizes, seed=0)
    pipe = CapHumanPipeline(**comps)
    pipe.set_progress_bar_config(disable=True)
    hidden, tokens = sizes.vision["hidden_size"], (sizes.vision["image_size"] // sizes.vision["patch_size"]) ** 2 + 1
    g = torch.Generator().manual_seed(0)
    hint = torch.randn(9, size, size, generator=g)
    id_emb = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1)
    img = torch.randn(1, tokens, hidden, generator=g)
    result = {"device": torch.cuda.get_device_name() if full_size else f"CPU ({os.cpu_count()} cores)",
              "torch": torch.__version__, "python": platform.python_version(), "model": "sd15-random" if full_size
              else "tiny-random", "size": size, "steps": steps, "guidance": 7.0, "num_images": 1}

    # ---- original-style loop: fp32, cond and uncond as separate passes, CapFace in each
    pipe.to(device)  # built in fp32
    ref = lambda: original_style_latents(pipe, "a photo of a person", hint, id_emb, img,  # noqa: E731
                                         num_inference_steps=steps, guidance_scale=7.0,
                                         generator=torch.Generator(device).manual_seed(0))
    ref()  # warm-up
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    best, mean = _timed(ref, device, repeats)
    result["original_style_fp32"] = {"s_per_image": round(best, 4), "mean_s": round(mean, 4),
                                     "it_per_s": round(steps / best, 2)}
    if device == "cuda":
        result["original_style_fp32"]["peak_vram_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)

    # ---- ours: one UNet batch for both branches, CapFace once per step; fp16 on CUDA
    dtype = torch.float16 if device == "cuda" else torch.float32
    if dtype != torch.float32:
        pipe.to(device, dtype)
    if channels_last and device == "cuda":
        pipe.unet.to(memory_format=torch.channels_last)
        pipe.capface.to(memory_format=torch.channels_last)
    if compile_unet:
        pipe.unet = torch.compile(pipe.unet, mode="max-autotune")
        pipe.capface = torch.compile(pipe.capface, mode="max-autotune")
    ours = lambda: pipe("a photo of a person", hint, id_emb, image_embeds=img,  # noqa: E731
                        num_inference_steps=steps, guidance_scale=7.0, output_type="np",
                        generator=torch.Generator(device).manual_seed(0))
    ours()
    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    best, mean = _timed(ours, device, repeats)
    key = f"ours_{'fp16' if dtype == torch.float16 else 'fp32'}"
    result[key] = {"s_per_image": round(best, 4), "mean_s": round(mean, 4), "it_per_s": round(steps / best, 2),
                   "includes": "text/context encoding, sampling and VAE decode"}
    if device == "cuda":
        result[key]["peak_vram_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    result["speedup_vs_original_style"] = round(result["original_style_fp32"]["s_per_image"] / best, 2)
    result["note"] = ("original-style timing covers sampling only (no VAE decode); ours includes decode"
                      + ("" if full_size else "; tiny model: measures plumbing, not GPU throughput"))
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--full-size-random", action="store_true", help="SD1.5-sized random models on CUDA")
    p.add_argument("--steps", type=int, default=None, help="default: 20 full size, 20 tiny")
    p.add_argument("--size", type=int, default=None, help="default: 512 full size, 64 tiny")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--compile", action="store_true", help="torch.compile the UNet and CapFace (CUDA)")
    p.add_argument("--no-channels-last", action="store_true")
    args = p.parse_args(argv)
    import torch

    torch.set_grad_enabled(False)
    res = run(args.full_size_random, args.steps or 20, args.size or (512 if args.full_size_random else 64),
              args.repeats, args.compile, not args.no_channels_last)
    if args.json:
        print(json.dumps(res, indent=2))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
