"""The Space the ZeroGPU way, with a fake ``spaces`` package (CPU): models loaded before the first GPU
call, a dynamic duration, ahead-of-time compilation through ``spaces.aoti_*`` with ``--compile``; the
README front matter and requirements against ZeroGPU's Python/torch versions and ``download all``.

The fake mirrors what the real ``spaces`` 0.51 does where it matters here (read from its source):
``GPU(duration=int | callable)`` calls a callable duration with the function's arguments, pickles
the arguments into a worker (here: a pickle round trip in process); ``aoti_capture`` replaces the
module's forward with one that raises, keeping the arguments; ``aoti_apply`` sets ``forward`` on the
module it is given and empties that module's weights. ``aoti_compile`` returns the exported
program's module (eager, but the real ``torch.export`` graph) instead of an inductor build.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_SPACES = '''
import contextlib, pickle
from unittest.mock import patch

import torch

calls = []        # one dict per GPU call: function name, duration asked, models loaded at entry
compiled = []     # modules aoti_compile built
applied = []      # (compiled object, module class) aoti_apply installed
state = {"pipes": []}


def GPU(task=None, *, duration=60, size=None):
    def wrap(fn):
        def run(*args, **kwargs):
            asked = duration(*args, **kwargs) if callable(duration) else duration
            loaded = [p._pipe is not None for p in state["pipes"]]
            calls.append({"fn": fn.__name__, "duration": asked, "callable": callable(duration),
                          "models_loaded_at_entry": loaded})
            args, kwargs = pickle.loads(pickle.dumps((args, kwargs)))  # what ZeroGPU does to reach its worker
            return fn(*args, **kwargs)
        return run
    return wrap(task) if callable(task) else wrap


@contextlib.contextmanager
def aoti_capture(module, call_method="forward"):
    class Captured(Exception):
        pass

    class Call:
        args, kwargs = (), {}

    call = Call()

    def capture(*args, **kwargs):
        raise Captured(args, kwargs)

    with patch.object(module, call_method, new=capture):
        try:
            yield call
        except Captured as exc:
            call.args, call.kwargs = exc.args


class Compiled:
    def __init__(self, module):
        self.module, self.calls = module, 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.module(*args, **kwargs)


def aoti_compile(exported, inductor_configs=None):
    assert isinstance(exported, torch.export.ExportedProgram)
    out = Compiled(exported.module())
    compiled.append(out)
    return out


def aoti_apply(compiled_model, module, call_method="forward"):
    setattr(module, call_method, compiled_model)
    for name, tensor in list(module.state_dict().items()):  # the real one drains the module's weights
        tensor.data = torch.empty(0, dtype=tensor.dtype)
    applied.append((compiled_model, type(module).__name__))
'''

SCRIPT = '''
import json, sys
import numpy as np
import spaces  # the fake, first (as app.py does)
import torch

from caphuman.controls.state import HeadState
from caphuman.studio import generation
from caphuman.studio.generation import GenerationParams
from caphuman.studio.gpu import StepProgress, generation_seconds

compile_flag = sys.argv[2] == "compile"  # the tests run with it; "plain" for a run by hand
orig_init = generation.Generator.__init__


def tracked_init(self, *a, **k):  # let the fake see every generator (models loaded at GPU entry?)
    orig_init(self, *a, **k)
    spaces.state["pipes"].append(self)


generation.Generator.__init__ = tracked_init

from demo.launch import create_app

service, demo = create_app(head="builtin", weights=sys.argv[1], device="auto", warmup=True, download=False,
                           compile=compile_flag)
gen = service.generator
pipe = gen._pipe
out = {"gpu_calls_before_first_generate": [c["fn"] for c in spaces.calls],
       "loaded_at_startup": pipe is not None, "device": service.device,
       "devices": sorted({str(p.device) for m in (pipe.unet, pipe.capface, pipe.vae, pipe.text_encoder)
                          for p in m.parameters()}),
       "aot_report": gen.aot_report,
       "torch_compiled": getattr(pipe.unet, "_compiled_call_impl", None) is not None}


class Progress:  # picklable stand-in for gr.Progress
    seen = []

    def __call__(self, value, desc=None, unit=None):
        Progress.seen.append(value)


photo = np.full((96, 96, 3), 128, np.uint8)
p1 = GenerationParams(prompt="a photo of a person", seed=3, steps=2, resolution=64)
p2 = GenerationParams(prompt="a photo of a person", seed=3, steps=4, num_images=2, resolution=64)
img1, used1 = service.generate(photo, HeadState(), p1, on_step=StepProgress(Progress()))
img2, used2 = service.generate(photo, HeadState(), p2, on_step=lambda i, n: None)  # dropped, not a crash
gpu = [c for c in spaces.calls if c["fn"] == "_generate_on_gpu"]
out.update(durations=[c["duration"] for c in gpu], callable=[c["callable"] for c in gpu],
           expected=[generation_seconds(used1), generation_seconds(used2)],
           loaded_at_entry=[c["models_loaded_at_entry"] for c in gpu], progress_steps=len(Progress.seen),
           shapes=[list(img1[0].image.shape), len(img2)])
if compile_flag:
    unet_fw, capface_fw = pipe.unet.forward, pipe.capface.forward
    out["dispatch_calls"] = {"unet": dict(unet_fw.calls), "capface": dict(capface_fw.calls)}
    out["compiled_model_calls"] = [c.calls for c in spaces.compiled]
    out["applied_to"] = [name for _, name in spaces.applied]
    out["unet_weights_kept"] = all(p.numel() > 0 for p in pipe.unet.parameters())
    out["compile_call_duration"] = [c["duration"] for c in spaces.calls if c["fn"] == "compile_on_gpu"]
    # the same image eagerly: the module's own forward, no AoT
    del pipe.unet.forward, pipe.capface.forward
    eager, _ = service.generate(photo, HeadState(), p1)
    out["max_abs_diff_vs_eager"] = int(np.abs(eager[0].image.astype(int) - img1[0].image.astype(int)).max())
    # another resolution than the compiled one goes to the eager forward
    pipe.unet.forward, pipe.capface.forward = unet_fw, capface_fw
    before = dict(unet_fw.calls)
    service.generate(photo, HeadState(), GenerationParams(prompt="x", seed=1, steps=1, resolution=128))
    out["other_resolution_calls"] = {k: unet_fw.calls[k] - before[k] for k in before}
print("RESULT " + json.dumps(out))
'''


@pytest.fixture(scope="module")
def zerogpu_run(tmp_path_factory, tiny_weights) -> dict:
    """One fake-ZeroGPU studio process with --compile (start-up, three generations), as JSON."""
    tmp_path = tmp_path_factory.mktemp("zerogpu")
    fake = tmp_path / "fake" / "spaces"
    fake.mkdir(parents=True, exist_ok=True)
    (fake / "__init__.py").write_text(FAKE_SPACES)
    script = tmp_path / "zerogpu_app.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, PYTHONPATH=f"{fake.parent}{os.pathsep}{ROOT}", SPACES_ZERO_GPU="true",
               HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False",
               CAPHUMAN_CHECKPOINTS=str(tmp_path / "checkpoints"), CAPHUMAN_AOT_RESOLUTION="64")
    env.pop("SPACE_ID", None)
    proc = subprocess.run([sys.executable, str(script), str(tiny_weights), "compile"], env=env, capture_output=True,
                          text=True, timeout=600, cwd=str(ROOT))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    return json.loads(lines[-1][len("RESULT "):])


def test_models_on_the_device_before_the_first_gpu_call_and_dynamic_duration(zerogpu_run):
    out = zerogpu_run
    # loaded at start-up, outside any @GPU function (the only GPU call before Generate is the AoT compile)
    assert out["loaded_at_startup"] and out["gpu_calls_before_first_generate"] == ["compile_on_gpu"]
    assert out["devices"] == [out["device"]]  # every weight already on the generation device
    assert out["loaded_at_entry"] == [[True], [True]]
    assert out["callable"] == [True, True] and out["durations"] == out["expected"]
    assert out["durations"][1] > out["durations"][0]  # 2 images x 4 steps ask more than 1 x 2
    assert out["progress_steps"] == 2  # StepProgress reached the (pickled) worker; the lambda was dropped
    assert out["shapes"] == [[64, 64, 3], 2]


def test_compile_on_zerogpu_takes_the_aot_path(zerogpu_run):
    """--compile on ZeroGPU: aoti_capture/compile/apply instead of torch.compile, for the resolution
    of CAPHUMAN_AOT_RESOLUTION (64 here, the size generated); the image equals the eager one (the
    exported graph runs the same fp32 ops: at most 1 level of rounding at the uint8 step)."""
    from caphuman.studio import aot

    out = zerogpu_run
    assert out["aot_report"]["error"] is None, out["aot_report"]
    assert out["aot_report"]["modules"] == list(aot.MODULES) and not out["torch_compiled"]
    assert out["compile_call_duration"] == [aot.COMPILE_SECONDS]
    assert out["applied_to"] == ["Module", "Module"]  # holders: the UNet and CapFace keep their weights
    assert out["unet_weights_kept"]
    # 2 steps (1 image; with guidance the UNet takes 2 rows, within the dynamic batch) + 4 steps (2 images)
    assert out["dispatch_calls"]["unet"] == {"compiled": 6, "eager": 0}
    assert out["dispatch_calls"]["capface"] == {"compiled": 6, "eager": 0}
    assert out["compiled_model_calls"] == [6, 6]
    assert out["max_abs_diff_vs_eager"] <= 1
    assert out["other_resolution_calls"] == {"compiled": 0, "eager": 1}


def test_front_matter_preloads_what_download_all_fetches_from_the_hub():
    import yaml

    from caphuman.weights.provision import preload_from_hub

    text = (ROOT / "README.md").read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["preload_from_hub"] == preload_from_hub("all")
    assert str(front["python_version"]) in ("3.12", "3.12.12", "3.10", "3.10.13")


def test_requirements_give_a_zerogpu_torch_on_the_space_python():
    """ZeroGPU supports torch 2.8.0, 2.9.1, 2.10.0 and 2.11.0 only; the Space's Python must select one."""
    import yaml
    from packaging.requirements import Requirement

    py = str(yaml.safe_load((ROOT / "README.md").read_text().split("---")[1])["python_version"])
    env = {"python_version": ".".join(py.split(".")[:2]), "python_full_version": py, "sys_platform": "linux",
           "platform_system": "Linux", "platform_machine": "x86_64", "implementation_name": "cpython"}
    torch_pins = []
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        req = Requirement(line)
        if req.name == "torch" and (req.marker is None or req.marker.evaluate(env)):
            torch_pins.append(str(req.specifier))
    assert torch_pins in (["==2.8.0"], ["==2.9.1"], ["==2.10.0"], ["==2.11.0"]), torch_pins


def test_duration_grows_with_steps_images_and_resolution_and_is_bounded():
    from caphuman.studio.gpu import GPU_TIME

    base = GPU_TIME.seconds(20, 1)
    assert GPU_TIME.seconds(40, 1) > base and GPU_TIME.seconds(20, 4) > base and GPU_TIME.seconds(20, 1, 768) > base
    assert GPU_TIME.seconds(4, 1, guidance=1.0, lora=True) < base + GPU_TIME.lora_s  # fast preset: few cheap steps
    assert GPU_TIME.seconds(150, 8, 1024) == GPU_TIME.max_s and GPU_TIME.seconds(1, 1, 64) == GPU_TIME.min_s
    # the default job asks less than the old fixed 120 s
    assert base < 60


def test_a_file_preloaded_into_the_hub_cache_is_linked_not_downloaded_and_not_rehashed(tmp_path, monkeypatch):
    import hashlib

    import huggingface_hub.constants as hub_constants

    from caphuman.weights import fetch as fetch_mod
    from caphuman.weights.registry import WeightFile

    data = b"preloaded weights" * 100
    snap = tmp_path / "hub" / "models--org--repo" / "snapshots" / ("c" * 40)
    snap.mkdir(parents=True)
    (snap / "w.bin").write_bytes(data)
    (tmp_path / "hub" / "models--org--repo" / "refs").mkdir()
    (tmp_path / "hub" / "models--org--repo" / "refs" / "main").write_text("c" * 40)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    entry = WeightFile(key="w", path="w/w.bin", description="test", licence="-", needed_for="-", hub_repo="org/repo",
                       hub_filename="w.bin", md5=hashlib.md5(data).hexdigest())
    logs = []
    root = tmp_path / "ckpt"
    out = fetch_mod.fetch(entry, root, log=logs.append)  # offline-free: a download attempt would fail (no server)
    assert out.is_symlink() and out.read_bytes() == data and "from the Hub cache" in logs[-1]
    hashed = []
    monkeypatch.setattr(fetch_mod, "file_checksum", lambda *a: hashed.append(a) or "x")
    fetch_mod.fetch(entry, root, log=logs.append)  # second start-up: recognised, nothing hashed
    assert hashed == [] and "verified before" in logs[-1]
