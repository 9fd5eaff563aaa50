"""Peak memory of ``python -m caphuman convert`` on real-size files, and of loading its output (issue 19).

Builds, in a temporary folder, full-size random files in the formats a user downloads:

* ``caphuman.ckpt``: a Lightning checkpoint (``ModelCheckpoint`` callback, omegaconf ``DictConfig``
  hyper-parameters, Adam ``optimizer_states`` for the trained CapFace parameters, numpy scalars),
  its ``state_dict`` in the original layout at SD1.5 widths: CapFace, projections, CLIP-vision copy,
  decoy UNet / VAE / text encoder, the DDPM schedule buffers;
* ``backbone.safetensors``: an SD1.5 single file (UNet + VAE + text encoder + schedule buffers);
* ``vae.safetensors``: an un-prefixed VAE (as vae-ft-mse-840000-ema-pruned, fp32);
* ``clip/``: a CLIP folder (real-size configs, a small tokenizer, the image processor).

The files are built in one child process; then ``convert`` runs in another (wall time, peak RSS =
the child's own ``VmHWM``, read in the child after the work: ``ru_maxrss`` of a child would include
the RSS it inherited at fork) and, in a third, ``load_pipeline`` of the result on the CPU in float32
as ``generate`` does (wall time, peak RSS, and the weights' own size for comparison). Prints one
JSON object with ``--json``.

    python benchmarks/convert_memory.py --json [--dtype float16|float32] [--no-optimizer-states] [--keep DIR]

Needs about 10 GB of disk for the fp16 set (20 GB for fp32) and a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
GiB = 1024 ** 3
MC = "pytorch_lightning.callbacks.model_checkpoint"
DC = "omegaconf.dictconfig"


@contextlib.contextmanager
def lightning_classes():
    """``ModelCheckpoint`` and ``DictConfig`` classes under their real module names while pickling
    (the packages are not installed; the restricted unpickler never imports them anyway)."""
    mods = {n: types.ModuleType(n) for n in ("pytorch_lightning", "pytorch_lightning.callbacks", MC,
                                             "omegaconf", DC)}

    def mc_init(self, dirpath, monitor):
        import torch

        self.dirpath, self.monitor, self.best_model_score, self.save_top_k = dirpath, monitor, torch.tensor(0.1), -1

    mc = type("ModelCheckpoint", (), {"__init__": mc_init, "__module__": MC})
    dc = type("DictConfig", (), {"__init__": lambda self, c: self.__dict__.update(_content=c, _parent=None),
                                 "__module__": DC})
    setattr(mods[MC], "ModelCheckpoint", mc)
    setattr(mods[DC], "DictConfig", dc)
    clash = set(mods) & set(sys.modules)
    if clash:
        raise SystemExit(f"refusing to shadow installed modules {sorted(clash)}")
    sys.modules.update(mods)
    try:
        yield mc, dc
    finally:
        for n in mods:
            sys.modules.pop(n, None)


def _random(meta: dict, dtype, seed: int) -> dict:
    """Real random tensors with the shapes of ``meta`` (position ids kept as they are)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in meta.items():
        if v.device.type != "meta":
            out[k] = v
        elif v.is_floating_point():
            out[k] = (torch.randn(v.shape, generator=g) * 0.02).to(dtype)
        else:
            out[k] = torch.zeros(v.shape, dtype=v.dtype)
    return out


def build_files(folder: Path, dtype_name: str, optimizer_states: bool, tiny: bool = False) -> dict:
    """Write the real-size set into ``folder``; returns the file sizes in bytes."""
    import numpy as np
    import torch
    from transformers import CLIPConfig, CLIPTextConfig, CLIPTextModel

    from caphuman.diffusion.tensor_files import write_safetensors
    from caphuman.testing.tiny_model import ModelSizes, _ddpm_buffers, build_components, original_layout

    dtype = getattr(torch, dtype_name)
    sizes = ModelSizes.tiny() if tiny else ModelSizes.sd15()
    with torch.device("meta"):
        comps = build_components(sizes)
        tok = comps["tokenizer"]
        text_cfg = CLIPTextConfig(vocab_size=len(tok) if tiny else 49408, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                  pad_token_id=tok.pad_token_id, projection_dim=sizes.text["hidden_size"], **sizes.text)
        comps["text_encoder"] = CLIPTextModel(text_cfg)
    ckpt_meta, backbone_meta, vae_meta = original_layout(comps, comps)
    schedule = {k: v.to(dtype) for k, v in _ddpm_buffers().items()}

    # caphuman.ckpt: Lightning payload around the state dict
    sd = _random(ckpt_meta, dtype, 0)
    sd.update(schedule)
    trained = [k for k in sd if k.startswith(("control_model.", "id_linear.", "img_linear."))]
    opt = {"state": {}, "param_groups": [{"lr": 1e-5, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0,
                                          "amsgrad": False, "params": list(range(len(trained)))}]}
    if optimizer_states:
        for i, k in enumerate(trained):
            opt["state"][i] = {"step": torch.tensor(1000.0), "exp_avg": torch.zeros(sd[k].shape),
                               "exp_avg_sq": torch.zeros(sd[k].shape)}
    with lightning_classes() as (mc, dc):
        payload = {"epoch": np.int64(3), "global_step": np.int64(20000), "pytorch-lightning_version": "1.9.0",
                   "state_dict": sd, "loops": {"fit_loop": {"epoch_progress": {"current": {"completed": 3}}}},
                   "callbacks": {"ModelCheckpoint{'monitor': None, 'mode': 'min'}": mc("/ckpts", None)},
                   "optimizer_states": [opt], "lr_schedulers": [], "hparams_name": "kwargs",
                   "hyper_parameters": dc({"sd_locked": True, "learning_rate": 1e-5,
                                           "control_stage_config": {"target": "cldm.cldm.ControlNet"}})}
        torch.save(payload, folder / "caphuman.ckpt")
    del sd, payload, opt

    bb = _random(backbone_meta, dtype, 1)
    bb.update({k: schedule[k] for k in ("betas", "alphas_cumprod", "alphas_cumprod_prev")})
    write_safetensors(folder / "backbone.safetensors", bb)
    del bb
    write_safetensors(folder / "vae.safetensors", _random(vae_meta, torch.float32, 2))

    clip = folder / "clip"
    CLIPConfig(text_config=text_cfg.to_dict(), vision_config=comps["image_encoder"].config.to_dict()) \
        .save_pretrained(clip)
    tok.save_pretrained(clip)
    comps["feature_extractor"].save_pretrained(clip)
    return {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}


PEAK = r"""
def _peak():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                print(f"@@peak_kib {line.split()[1]}", flush=True)
import atexit; atexit.register(_peak)
"""
CONVERT = PEAK + r"""
import sys
from caphuman.__main__ import main
code = main(["convert", *sys.argv[1:]])
sys.stdout.flush(); sys.exit(code)
"""
LOAD = PEAK + r"""
import sys, time, torch
from caphuman.diffusion.loading import load_pipeline
t0 = time.perf_counter()
pipe = load_pipeline(sys.argv[1], torch.float32)
t1 = time.perf_counter()
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
after_load = hwm()
n = 0
with torch.no_grad():  # touch every weight once, as a generate step does (mapped pages become resident)
    for m in (pipe.unet, pipe.capface, pipe.vae, pipe.text_encoder, pipe.image_encoder):
        for p in m.state_dict().values():
            n += p.numel() * p.element_size()
            float(p.float().sum()) if p.is_floating_point() else None
print(f"loaded in {t1 - t0:.1f} s (peak {after_load:.2f} GiB right after loading); weights {n / 2**30:.2f} GiB, "
      "all touched")
"""


def run_measured(code: str, args: list[str], env: dict) -> dict:
    """Run ``python -c code args``; wall seconds, peak RSS (GiB, the child's VmHWM), exit code, last output."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    lines = p.stdout.decode("utf-8", "replace").strip().splitlines()
    peak = [int(x.split()[1]) for x in lines if x.startswith("@@peak_kib ")]
    tail = [x for x in lines if not x.startswith("@@peak_kib ") and "it/s]" not in x][-6:]
    return {"wall_s": round(wall, 1), "peak_rss_gib": round(peak[-1] * 1024 / GiB, 2) if peak else None,
            "returncode": p.returncode, "output_tail": tail}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object (default: a short summary)")
    ap.add_argument("--dtype", choices=("float16", "float32"), default="float16", help="dtype of the files")
    ap.add_argument("--no-optimizer-states", action="store_true", help="leave Adam states out of caphuman.ckpt")
    ap.add_argument("--tiny", action="store_true", help="the tiny test widths (a smoke run of this script)")
    ap.add_argument("--keep", default=None, help="build in (and keep) this folder instead of a temporary one; "
                                                 "files already there are reused")
    ap.add_argument("--build-only", action="store_true", help=argparse.SUPPRESS)  # the builder child
    args = ap.parse_args(argv)
    if args.build_only:
        files = build_files(Path(args.keep), args.dtype, not args.no_optimizer_states, args.tiny)
        print(json.dumps(files))
        return 0

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="caphuman-convert-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    try:
        t0 = time.perf_counter()
        if not (folder / "vae.safetensors").is_file():  # built in a child: this process stays small
            cmd = [sys.executable, __file__, "--build-only", "--keep", str(folder), "--dtype", args.dtype,
                   *(["--no-optimizer-states"] if args.no_optimizer_states else []), *(["--tiny"] if args.tiny else [])]
            subprocess.run(cmd, check=True, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)
        files = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file() and p.suffix != ".yaml"}
        build_s = time.perf_counter() - t0
        out = folder / "converted"
        config = ["--original-config", str(folder / "cldm.yaml")] if args.tiny else []
        if args.tiny:
            from caphuman.diffusion.sizes import ModelSizes

            (folder / "cldm.yaml").write_text(ModelSizes.tiny().original_yaml())
        shutil.rmtree(out, ignore_errors=True)
        convert = run_measured(CONVERT, [*config, "--caphuman-ckpt", str(folder / "caphuman.ckpt"), "--backbone",
                                         str(folder / "backbone.safetensors"), "--vae", str(folder / "vae.safetensors"),
                                         "--clip", str(folder / "clip"), "--out", str(out)], env)
        load = run_measured(LOAD, [str(out)], env) if convert["returncode"] == 0 else None
        written = sum(p.stat().st_size for p in out.rglob("*.safetensors")) if out.is_dir() else 0
        result = {
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "files_dtype": args.dtype, "optimizer_states": not args.no_optimizer_states,
            "file_gib": {k: round(v / GiB, 2) for k, v in sorted(files.items())}, "build_s": round(build_s, 1),
            "convert": convert, "converted_weights_gib": round(written / GiB, 2),
            "load_pipeline_cpu_float32": load,
            "target_gib": 4 if args.dtype == "float16" else 6,
        }
        result["within_target"] = convert["returncode"] == 0 and convert["peak_rss_gib"] <= result["target_gib"]
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"convert: {convert['wall_s']} s, peak {convert['peak_rss_gib']} GiB (target {result['target_gib']})")
        if load:
            print(f"load: {load['wall_s']} s, peak {load['peak_rss_gib']} GiB")
    return 0 if result["within_target"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
