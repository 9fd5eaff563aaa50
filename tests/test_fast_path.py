"""The fast path on the tiny model (CPU): acceleration settings, fp16/bf16 decoding, and that the
default DDIM fp32 path computes exactly what it did."""

import numpy as np
import pytest

from diffusion_fixtures import conditioning  # noqa: F401

torch = pytest.importorskip("torch")


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
    torch.testing.assert_close(_run(nhwc, conditioning), ref, rtol=1e-4, atol=1e-4)
    compiled = configure_pipeline(_pipe(), Acceleration.for_device("cpu", compile=True, compile_backend="eager"))
    with Calls(compiled) as calls:
        out = _run(compiled, conditioning)
    assert [t for t, _ in calls.unet] == [501, 1] and len(calls.capface) == 2
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)


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
    assert np.abs(images.astype(int) - fp32).mean() < 20  # the same picture, in bf16 rounding
