"""The files' DDIM schedule: an fp16-stored alphas_cumprod is what the original samples with, bit for bit;
fp32 files with the standard schedule keep the plain configuration."""

import math

import numpy as np
import pytest

from diffusion_fixtures import tiny_dir  # noqa: F401

torch = pytest.importorskip("torch")


def _convert(tiny_dir, out, backbone):
    from caphuman.diffusion.convert import convert_caphuman

    orig = tiny_dir / "original"
    return convert_caphuman(orig / "caphuman.ckpt", out, backbone=backbone, vae=orig / "vae.safetensors",
                            original_config=orig / "cldm_tiny.yaml", clip=orig / "clip", log=lambda *_: None)


def _ldm_alphas_cumprod_float64() -> np.ndarray:
    """Independent of the code under test: the LDM "linear" schedule in numpy float64."""
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return np.cumprod(1.0 - betas)


@pytest.fixture(scope="module")
def fp16_backbone(tiny_dir, tmp_path_factory):
    """The tiny backbone plus the schedule buffers stored in fp16, as community fp16 files carry them."""
    from safetensors.torch import load_file, save_file

    sd = load_file(str(tiny_dir / "original" / "backbone.safetensors"))
    ac = _ldm_alphas_cumprod_float64()
    sd["alphas_cumprod"] = torch.from_numpy(ac).half()
    sd["betas"] = torch.from_numpy(1 - ac / np.concatenate([[1.0], ac[:-1]])).half()
    path = tmp_path_factory.mktemp("fp16") / "backbone_fp16.safetensors"
    save_file(sd, str(path))
    return path, sd["alphas_cumprod"]


def test_fp16_schedule_is_reproduced_exactly(tiny_dir, fp16_backbone, tmp_path):
    from caphuman.diffusion.loading import load_pipeline
    from caphuman.diffusion.schedulers import make_scheduler

    path, stored = fp16_backbone
    result = _convert(tiny_dir, tmp_path / "out", path)
    assert result.trained_betas is not None and result.complete
    pipe = load_pipeline(tmp_path / "out")
    sched = pipe.scheduler
    # the original's buffer: the fp16 values copied into float32 (exact), nothing recomputed
    original_buffer = stored.float()
    assert torch.equal(sched.alphas_cumprod, original_buffer)
    assert sched.final_alpha_cumprod == original_buffer[0]
    # the generate/studio paths rebuild the scheduler from the loaded one: still exact, DPM++ too carries it
    assert torch.equal(make_scheduler("ddim", like=sched).alphas_cumprod, original_buffer)
    assert make_scheduler("dpmpp", like=sched).config.trained_betas == result.trained_betas

    # DDIM steps against an independent float64 computation of the original's update (eta 0)
    sched.set_timesteps(20)
    ts = [int(t) for t in sched.timesteps]
    assert ts == list(range(951, 0, -50))
    ac = original_buffer.double().numpy()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(1, 4, 8, 8, generator=g)
    eps = torch.randn(1, 4, 8, 8, generator=g)
    default = make_scheduler("ddim")
    default.set_timesteps(20)
    worst_default = 0.0
    for t in ts:
        a_t, a_prev = ac[t], (ac[t - 50] if t - 50 >= 0 else ac[0])
        xd, ed = x.double().numpy(), eps.double().numpy()
        want = math.sqrt(a_prev) * (xd - math.sqrt(1 - a_t) * ed) / math.sqrt(a_t) + math.sqrt(1 - a_prev) * ed
        got = sched.step(eps, t, x).prev_sample.double().numpy()
        # fp32 arithmetic: coefficients <= sqrt(a_prev / a_t) <= 15, |x|, |eps| <= 5, about 8 roundings of
        # 2**-24 relative each: 15 * 5 * 8 * 6e-8 = 4e-5 absolute
        np.testing.assert_allclose(got, want, rtol=0, atol=4e-5)
        worst_default = max(worst_default, float(np.abs(default.step(eps, t, x).prev_sample.double().numpy()
                                                         - want).max()))
    assert worst_default > 1e-3  # the recomputed fp32 schedule is measurably not what the original samples with


def test_fp32_files_keep_the_plain_schedule(tiny_dir, tmp_path):
    """The tiny checkpoint stores the standard buffers in fp32: the converted scheduler config is unchanged."""
    import json

    from caphuman.diffusion.schedulers import make_scheduler

    orig = tiny_dir / "original"
    result = _convert(tiny_dir, tmp_path / "out", orig / "backbone.safetensors")
    assert result.trained_betas is None
    saved = json.loads((tmp_path / "out" / "scheduler" / "scheduler_config.json").read_text())
    plain = json.loads((tiny_dir / "scheduler" / "scheduler_config.json").read_text())
    assert saved == plain and saved["trained_betas"] is None
    assert make_scheduler("ddim").config.trained_betas is None


def test_stored_schedule_rules():
    from caphuman.diffusion.schedulers import standard_alphas_cumprod, stored_schedule_betas
    from caphuman.errors import InputError

    ac = standard_alphas_cumprod()
    assert torch.equal(ac, torch.from_numpy(_ldm_alphas_cumprod_float64()).float())
    assert stored_schedule_betas(ac) is None and stored_schedule_betas(ac.double()) is None
    assert stored_schedule_betas(ac.half()) is not None and stored_schedule_betas(ac.bfloat16()) is not None
    shifted = ac * 0.99  # a different schedule stored in fp32 is used too
    assert stored_schedule_betas(shifted) is not None
    for bad in (ac[:999], torch.full((1000,), float("nan")), -ac):
        with pytest.raises(InputError, match="not a 1000-step noise schedule"):
            stored_schedule_betas(bad, where="x.safetensors")
