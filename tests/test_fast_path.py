"""The fast path on the tiny model (CPU): acceleration settings, the fast preset (LCM-LoRA + LCM
scheduler), fp16/bf16 decoding, and that the default DDIM fp32 path computes exactly what it did."""

import json
import os

import numpy as np
import pytest

from diffusion_fixtures import conditioning, tiny_dir  # noqa: F401
from tolerances import assert_close_scaled, sampling_growth

torch = pytest.importorskip("torch")

FAST_LORA = "lora/fast/lcm-lora-sdv1-5.safetensors"


def _pipe(seed=0):
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.testing.tiny_model import build_components

    pipe = CapHumanPipeline(**build_components(seed=seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _run(pipe, cond, **kw):
    args = dict(prompt="a portrait", hint=cond["hint"], id_embedding=cond["id_embedding"],
                image_embeds=cond["image_embeds"], negative_prompt="blurry", num_inference_steps=2,
                guidance_scale=7.0, tau=500, output_type="latent", generator=torch.Generator().manual_seed(3))
    args.update(kw)
    return pipe(**args).images


@pytest.fixture(scope="module")
def checkpoints(tiny_dir, tmp_path_factory):
    """A checkpoints root holding a random tiny LoRA at the registry path of the LCM-LoRA (its stand-in)."""
    pytest.importorskip("peft")
    from caphuman.testing.tiny_lora import write_tiny_lora

    root = tmp_path_factory.mktemp("checkpoints")
    write_tiny_lora(tiny_dir, root / FAST_LORA, seed=11)
    write_tiny_lora(tiny_dir, root / "lora" / "style.safetensors", seed=12)
    return root


@pytest.fixture
def with_fast_lora(checkpoints, monkeypatch):
    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(checkpoints))
    return checkpoints


class Calls:
    """Forward pre-hooks on the UNet and CapFace: timesteps, batch sizes and CapFace's inputs per call."""

    def __init__(self, pipe):
        self.unet, self.capface = [], []
        self._hooks = [
            pipe.unet.register_forward_pre_hook(lambda m, a: self.unet.append((int(a[1]), a[0].shape[0]))),
            pipe.capface.register_forward_pre_hook(
                lambda m, a: self.capface.append((int(a[1]), a[2].clone(), a[3].clone()))),
        ]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for h in self._hooks:
            h.remove()


# ---------------------------------------------------------------------------- the default path is unchanged
def test_default_ddim_fp32_is_bit_identical_with_acceleration_configured(conditioning):
    from diffusers.models.attention_processor import AttnProcessor2_0

    from caphuman.diffusion.acceleration import Acceleration, configure_pipeline

    plain = _pipe()
    # diffusers 0.42 on torch 2 already uses SDPA everywhere: pinning it changes nothing.
    assert {type(p) for p in plain.unet.attn_processors.values()} == {AttnProcessor2_0}
    accel = Acceleration.for_device("cpu")
    assert (accel.dtype, accel.use_channels_last, accel.compile) == ("fp32", False, False)
    assert accel.load_dtype() == torch.float32
    configured = configure_pipeline(_pipe(), accel)
    for model in (configured.unet, configured.capface.controlnet, configured.vae):
        assert {type(p) for p in model.attn_processors.values()} == {AttnProcessor2_0}
    for kw in (dict(), dict(num_images=2, guidance_scale=1.0, tau=0)):
        assert torch.equal(_run(plain, conditioning, **kw), _run(configured, conditioning, **kw))
    a = _run(plain, conditioning, output_type="np")
    b = _run(configured, conditioning, output_type="np")
    assert np.array_equal(a, b)


def test_channels_last_and_compile_plumbing_on_cpu(conditioning):
    """channels-last (off by default on the CPU) changes only rounding; compile (here the eager backend,
    inductor needs minutes on this CPU) keeps hooks working and computes the same numbers."""
    from caphuman.diffusion.acceleration import Acceleration, configure_pipeline

    ref = _run(_pipe(), conditioning)
    nhwc = configure_pipeline(_pipe(), Acceleration.for_device("cpu", channels_last=True))
    assert nhwc.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    # the same 2-step, g = 7 run in another memory layout: tolerances.sampling_growth(2, 7) = 209 float32
    # units of max|ref| (~1.3e-4 here); measured 20-29. A skipped CapFace residual or a wrong timestep moves
    # the latents by >= 1e-2 (>= 10000 units).
    budget = sampling_growth(2, 7.0)
    assert_close_scaled(_run(nhwc, conditioning), ref, budget, what="channels-last")
    compiled = configure_pipeline(_pipe(), Acceleration.for_device("cpu", compile=True, compile_backend="eager"))
    with Calls(compiled) as calls:
        out = _run(compiled, conditioning)
    assert [t for t, _ in calls.unet] == [501, 1] and len(calls.capface) == 2
    assert_close_scaled(out, ref, budget, what="compiled (eager)")  # the same ATen ops: measured bit-equal


# ---------------------------------------------------------------------------- dtypes
def test_dtype_choices():
    from caphuman.diffusion.acceleration import Acceleration, decode_dtype
    from caphuman.errors import InputError

    assert decode_dtype(torch.float16) == torch.float32  # the SD VAE decoder overflows in fp16
    assert decode_dtype(torch.bfloat16) == torch.bfloat16 and decode_dtype(torch.float32) == torch.float32
    fp16 = Acceleration(device="cuda", dtype="fp16")
    assert fp16.load_dtype() == {"default": torch.float16, "vae": torch.float32} and fp16.use_channels_last
    assert Acceleration(device="cuda", dtype="bf16").load_dtype() == torch.bfloat16
    with pytest.raises(InputError, match="fp16 is not supported on the CPU"):
        Acceleration.for_device("cpu", "fp16")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            Acceleration.for_device("cuda")
        assert Acceleration.for_device("auto").device == "cpu"


def test_fp16_vae_decodes_in_fp32():
    """An fp16 VAE (e.g. a pipeline cast with .to(float16)) is upcast before decoding."""
    pipe = _pipe()
    latents = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)) * 3
    pipe.vae.to(torch.float16)
    seen = []
    hook = pipe.vae.decoder.register_forward_pre_hook(lambda m, a: seen.append(a[0].dtype))
    try:
        images = pipe.decode_latents(latents.half())
    finally:
        hook.remove()
    assert seen == [torch.float32] and pipe.vae.dtype == torch.float32
    # = an fp32 decode of the fp16-rounded weights and latents
    ref = _pipe()
    ref.vae.load_state_dict({k: v.float() for k, v in pipe.vae.state_dict().items()})
    assert np.array_equal(images, ref.decode_latents(latents.half().float()))


def test_fp16_configured_pipeline_keeps_its_vae_in_fp32():
    from caphuman.diffusion.acceleration import Acceleration, configure_pipeline

    pipe = _pipe()
    # configure without moving: device "cpu" with an fp16 setting built directly (fp16 compute is CUDA only)
    configure_pipeline(pipe, Acceleration(device="cpu", dtype="fp16", channels_last=False))
    assert pipe.unet.dtype == pipe.capface.dtype == pipe.text_encoder.dtype == torch.float16
    assert pipe.vae.dtype == torch.float32


def test_bf16_on_cpu_runs_and_decodes_finite_images(conditioning):
    from caphuman.diffusion.acceleration import Acceleration, configure_pipeline

    pipe = configure_pipeline(_pipe(), Acceleration.for_device("cpu", "bf16"))
    assert pipe.unet.dtype == pipe.vae.dtype == torch.bfloat16
    decoded = []
    hook = pipe.vae.decoder.register_forward_hook(lambda m, a, out: decoded.append(out))
    try:
        images = _run(pipe, conditioning, output_type="np")
    finally:
        hook.remove()
    assert decoded[0].dtype == torch.bfloat16 and torch.isfinite(decoded[0]).all()
    assert images.shape == (1, 64, 64, 3) and images.std() > 0
    fp32 = _run(_pipe(), conditioning, output_type="np").astype(int)
    # the same picture in bf16 (8-bit mantissa: 2^-8 = 0.4% relative per op, over 2 steps of ~64 ops, i.e.
    # grey levels, not float32 units): a mean of < 20 levels; a different image (another seed) is ~60 apart
    assert np.abs(images.astype(int) - fp32).mean() < 20


# ---------------------------------------------------------------------------- the fast preset
def test_lcm_scheduler_on_the_sd15_schedule():
    from diffusers import LCMScheduler

    from caphuman.diffusion.schedulers import DDIM_CONFIG, make_scheduler

    lcm, ddim = make_scheduler("lcm"), make_scheduler("ddim")
    assert isinstance(lcm, LCMScheduler)
    assert torch.equal(lcm.alphas_cumprod, ddim.alphas_cumprod)
    assert {k: lcm.config[k] for k in ("beta_start", "beta_end", "beta_schedule", "prediction_type")} == \
        {k: DDIM_CONFIG[k] for k in ("beta_start", "beta_end", "beta_schedule", "prediction_type")}
    lcm.set_timesteps(4)
    assert lcm.timesteps.tolist() == [999, 759, 499, 259]


def test_presets_resolution():
    from caphuman.diffusion import presets
    from caphuman.errors import InputError

    assert presets.resolve("original", None, None, None) == ("ddim", 20, 7.0)
    assert presets.resolve("fast", None, None, None) == ("lcm", 4, 1.0)
    assert presets.resolve("fast", None, 8, 1.5) == ("lcm", 8, 1.5)
    assert presets.resolve("original", "dpmpp", 30, None) == ("dpmpp", 30, 7.0)
    with pytest.raises(InputError, match="lcm scheduler"):
        presets.resolve("fast", "ddim", None, None)
    with pytest.raises(InputError, match="1-50 steps"):
        presets.resolve("fast", None, 51, None)
    assert presets.values_for_scheduler("lcm", 20, 7.0) == (4, 1.0)
    assert presets.values_for_scheduler("ddim", 4, 1.0) == (20, 7.0)
    assert presets.values_for_scheduler("dpmpp", 30, 5.0) == (30, 5.0)


def test_fast_lora_missing_names_the_download_command(tmp_path, monkeypatch):
    from caphuman.diffusion.lora import apply_fast_lora
    from caphuman.errors import MissingWeightsError
    from caphuman.studio.generation import GenerationParams
    from caphuman.weights.download import GROUPS
    from caphuman.weights.registry import REGISTRY

    entry = REGISTRY["lcm_lora"]
    assert (entry.hub_repo, entry.hub_filename, entry.path, entry.licence) == (
        "latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors", FAST_LORA, "openrail++")
    assert "lcm_lora" in GROUPS["fast"] and "lcm_lora" in GROUPS["all"]
    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="python -m caphuman download fast"):
        apply_fast_lora(_pipe(), True)
    with pytest.raises(MissingWeightsError, match="download fast"):
        GenerationParams(prompt="x", scheduler="lcm", steps=4, guidance=1.0).validated()
    apply_fast_lora(_pipe(), False)  # turning it off never needs the file (nor peft)


def test_fast_lora_is_active_coexists_with_a_user_lora_and_switches_off_exactly(with_fast_lora, conditioning):
    from caphuman.diffusion.lora import active_adapters, apply_fast_lora, apply_lora
    from caphuman.diffusion.schedulers import make_scheduler

    pipe = _pipe()
    pipe.scheduler = make_scheduler("lcm")
    kw = dict(num_inference_steps=4, guidance_scale=1.0)
    base = _run(pipe, conditioning, **kw)
    apply_fast_lora(pipe, True)
    fast = _run(pipe, conditioning, **kw)
    assert (fast - base).abs().max() > 1e-3  # the LoRA really acts
    active = apply_lora(pipe, "style.safetensors", 0.8)
    assert active_adapters(pipe) == {"fast": 1.0, "user": 0.8}
    assert sorted(pipe.get_active_adapters()) == ["fast", "user"]
    both = _run(pipe, conditioning, **kw)
    assert (both - fast).abs().max() > 1e-3
    apply_fast_lora(pipe, False)
    user = _run(pipe, conditioning, **kw)
    assert pipe.get_active_adapters() == ["user"] and (user - both).abs().max() > 1e-3
    apply_lora(pipe, None, active=active)  # removing the user LoRA must not re-activate "fast"
    assert active_adapters(pipe) == {}
    assert torch.equal(_run(pipe, conditioning, **kw), base)
    apply_fast_lora(pipe, True)  # still loaded: no reload, same numbers as before
    assert torch.equal(_run(pipe, conditioning, **kw), fast)


def test_fast_preset_runs_capface_every_step_with_the_same_gating(with_fast_lora, conditioning, monkeypatch):
    """Same __call__: CapFace sees the same hint embedding and context (tau-gated) as on the DDIM path,
    the mask gates its residuals the same way; only scheduler, steps, guidance and the LoRA differ."""
    import caphuman.diffusion.pipeline as pipeline_mod
    from caphuman.diffusion.lora import apply_fast_lora
    from caphuman.diffusion.schedulers import make_scheduler

    gates = []
    real_gate = pipeline_mod.gate_residuals

    def spy(down, mid, mask, strength):
        gates.append((mask.clone(), strength))
        return real_gate(down, mid, mask, strength)

    monkeypatch.setattr(pipeline_mod, "gate_residuals", spy)
    pipe = _pipe()
    with Calls(pipe) as normal:
        _run(pipe, conditioning, num_inference_steps=2, guidance_scale=7.0, tau=600, strength=0.7)
    normal_gates, gates[:] = list(gates), []
    pipe.scheduler = make_scheduler("lcm")
    apply_fast_lora(pipe, True)
    with Calls(pipe) as fast:
        _run(pipe, conditioning, num_inference_steps=4, guidance_scale=1.0, tau=600, strength=0.7)
    assert [t for t, _ in fast.unet] == [999, 759, 499, 259]
    assert [b for _, b in fast.unet] == [1, 1, 1, 1]  # guidance 1: no unconditional pass
    assert [t for t, _, _ in fast.capface] == [999, 759, 499, 259]  # CapFace every step
    _, context, hint = normal.capface[-1]  # t = 1 <= tau: the identity context
    for t, ctx, guided in fast.capface:
        assert torch.equal(guided, hint)
        assert torch.equal(ctx, context if t <= 600 else torch.zeros_like(context))
    assert len(gates) == 4 and all(s == 0.7 and torch.equal(m, normal_gates[0][0]) for m, s in gates)


def test_fast_preset_in_the_studio_generator(with_fast_lora, tiny_dir):
    from diffusers import LCMScheduler

    from caphuman.studio.generation import GenerationParams, Generator

    gen = Generator(tiny_dir, "cpu")
    ref = np.random.default_rng(0).integers(0, 255, (80, 64, 3), dtype=np.uint8)
    hint = (np.random.default_rng(1).standard_normal((9, 64, 64)) * 0.5).astype(np.float32)

    def run(**kw):
        p = GenerationParams(prompt="a portrait", seed=5, resolution=64, **kw).validated()
        return gen.generate(ref, hint, p)[0].image

    original = run(steps=2)
    pipe, _ = gen.load()
    with Calls(pipe) as calls:
        fast = run(scheduler="lcm", steps=4, guidance=1.0)
    assert isinstance(pipe.scheduler, LCMScheduler) and pipe.get_active_adapters() == ["fast"]
    assert [t for t, _ in calls.unet] == [999, 759, 499, 259] and len(calls.capface) == 4
    assert not np.array_equal(fast, original)
    assert np.array_equal(run(steps=2), original)  # back to DDIM: the LoRA is off, same image as before
    assert np.array_equal(run(scheduler="lcm", steps=4, guidance=1.0), fast)  # and on again, no reload
    from caphuman.errors import InputError

    with pytest.raises(InputError, match="1-50 steps"):
        GenerationParams(prompt="x", scheduler="lcm", steps=60).validated()


def test_fast_preset_via_the_cli(with_fast_lora, tiny_dir, tmp_path):
    """``--preset fast`` end to end; the CLI fuses the LoRA (one-shot), the studio keeps it as an adapter:
    both give the same image up to rounding."""
    from PIL import Image

    from caphuman.__main__ import main
    from caphuman.studio.generation import GenerationParams, Generator

    ref = np.random.default_rng(0).integers(0, 255, (80, 64, 3), dtype=np.uint8)
    Image.fromarray(ref).save(tmp_path / "ref.png")
    hint = (np.random.default_rng(1).standard_normal((9, 64, 64)) * 0.5).astype(np.float32)
    np.save(tmp_path / "hint.npy", hint)
    common = ["generate", "--weights", str(tiny_dir), "--reference", str(tmp_path / "ref.png"), "--prompt",
              "a portrait", "--hint", str(tmp_path / "hint.npy"), "--size", "64", "--seed", "5", "--device", "cpu"]
    assert main([*common, "--preset", "fast", "--out", str(tmp_path / "fast.png")]) == 0
    side = json.loads((tmp_path / "fast.json").read_text())["parameters"]
    assert (side["preset"], side["scheduler"], side["steps"], side["guidance"]) == ("fast", "lcm", 4, 1.0)
    assert side["acceleration"]["dtype"] == "fp32" and side["acceleration"]["attention"].startswith("sdpa")
    cli = np.asarray(Image.open(tmp_path / "fast.png"), dtype=np.int16)
    studio = Generator(tiny_dir, "cpu").generate(
        ref, hint, GenerationParams(prompt="a portrait", seed=5, resolution=64, scheduler="lcm", steps=4,
                                    guidance=1.0).validated())[0].image
    # fused LoRA (CLI) vs adapter (studio): the same sums in another order, float32 units; in uint8 that
    # can only flip a pixel on a .5 boundary by one level
    assert np.abs(cli - studio).max() <= 1
    assert main([*common, "--steps", "2", "--out", str(tmp_path / "ddim.png")]) == 0
    assert not np.array_equal(np.asarray(Image.open(tmp_path / "ddim.png")), cli)
    assert main([*common, "--preset", "fast", "--scheduler", "ddim", "--out", str(tmp_path / "x.png")]) == 2


def test_fast_preset_cli_without_the_lora(tiny_dir, tmp_path, capsys, monkeypatch):
    from caphuman.__main__ import main

    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path))
    rc = main(["generate", "--weights", str(tiny_dir), "--reference", "nope.png", "--prompt", "x", "--size", "64",
               "--preset", "fast", "--device", "cpu", "--out", str(tmp_path / "o.png")])
    assert rc == 2 and "python -m caphuman download fast" in capsys.readouterr().err


def test_random_lora_of_lcm_lora_size_loads(conditioning):
    """The benchmark's stand-in for LCM-LoRA: rank 64 on LCM-LoRA's layers; here on the tiny UNet."""
    import tempfile

    pytest.importorskip("peft")
    from safetensors.torch import save_file

    from caphuman.diffusion.lora import apply_fast_lora
    from caphuman.testing.tiny_lora import random_lora_state_dict

    pipe = _pipe()
    sd = random_lora_state_dict(pipe.unet, rank=4, std=0.05)
    assert any(".conv1.lora_A" in k for k in sd) and any("time_emb_proj" in k for k in sd)
    base = _run(pipe, conditioning)
    with tempfile.TemporaryDirectory() as d:
        save_file(sd, os.path.join(d, "lora.safetensors"))
        apply_fast_lora(pipe, True, os.path.join(d, "lora.safetensors"))
    assert (_run(pipe, conditioning) - base).abs().max() > 1e-4
