"""Helpers shared by the generation benchmarks (``generate.py``, ``batch.py``, ``gpu_check.py``):
CUDA-aware timing, peak VRAM, the device's name, synthetic conditioning and the fast preset's
random LoRA. Importable as ``common`` from the scripts (their folder is on ``sys.path``)."""

from __future__ import annotations

import os
import tempfile
import time

PROMPT = "a photo of a person"


def sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gb(device: str) -> float | None:
    """``torch.cuda.max_memory_allocated`` since the last :func:`reset_peak`, GiB (None on the CPU)."""
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2) if device == "cuda" else None


def device_label(device: str) -> str:
    import torch

    return torch.cuda.get_device_name() if device == "cuda" else f"CPU ({os.cpu_count()} cores)"


def measure(fn, device: str, repeats: int, warmup: int, steps: int, images: int = 1) -> dict:
    """Warm-up calls, then ``repeats`` timed calls: best and mean seconds per image, it/s (denoising
    steps of the whole call per second) and the peak VRAM of the timed calls."""
    for _ in range(warmup):
        fn()
    sync(device)
    reset_peak(device)
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    out = {"s_per_image": round(best / images, 4), "mean_s": round(sum(times) / len(times), 4),
           "it_per_s": round(steps / best, 2)}
    if images > 1:
        out.update(images=images, images_per_s=round(images / best, 3))
    if device == "cuda":
        out["peak_vram_gb"] = peak_gb(device)
    return out


def flag(value, limit, at_most: bool = True):
    """value <= limit (or >= with ``at_most=False``); None when either is unknown."""
    if value is None or limit is None:
        return None
    return bool(value <= limit) if at_most else bool(value >= limit)


def conditioning(sizes, size: int, seed: int = 0) -> dict:
    """Random hint (9, size, size), unit id embedding (1, 512) and CLIP-vision tokens shaped for ``sizes``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    tokens = (sizes.vision["image_size"] // sizes.vision["patch_size"]) ** 2 + 1
    return {"hint": torch.randn(9, size, size, generator=g),
            "id_embedding": torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1),
            "image_embeds": torch.randn(1, tokens, sizes.vision["hidden_size"], generator=g)}


def add_random_fast_lora(pipe, full_size: bool) -> dict:
    """Load a random LoRA of LCM-LoRA's rank and layers (rank 4 for tiny models) as the fast adapter;
    returns its rank and size (millions of parameters)."""
    from safetensors.torch import save_file

    from caphuman.diffusion.lora import apply_fast_lora
    from caphuman.testing.tiny_lora import LCM_LORA_RANK, random_lora_state_dict

    rank = LCM_LORA_RANK if full_size else 4
    sd = random_lora_state_dict(pipe.unet, rank=rank)
    info = {"lora_rank": rank, "lora_params_m": round(sum(v.numel() for v in sd.values()) / 1e6, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lcm-lora-random.safetensors")
        save_file(sd, path)
        del sd
        apply_fast_lora(pipe, True, path)
    return info
