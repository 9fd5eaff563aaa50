"""Studio logic without a server: sliders <-> state, pose transfer, host choice, degraded modes."""

from __future__ import annotations

import pytest

from caphuman.controls.state import HeadState
from caphuman.errors import InputError, MissingWeightsError
from caphuman.studio import serving
from caphuman.studio.controls import SLIDERS, state_from_values, transfer, values_from_state
from caphuman.studio.generation import GenerationParams


def test_sliders_round_trip_and_keep_identity():
    base = HeadState(shape=[0.5, -0.2], albedo=[0.1], expression=[0.0] * 12 + [0.7])
    values = values_from_state(base)
    values[[s.key for s in SLIDERS].index("pose.yaw")] = 33.0
    values[[s.key for s in SLIDERS].index("expr.smile")] = 0.5
    state = state_from_values(base, values).validated()
    assert state.pose.yaw == 33.0 and state.expression_controls["smile"] == 0.5
    assert state.shape == [0.5, -0.2] and state.albedo == [0.1] and state.expression[12] == 0.7
    assert values_from_state(state)[[s.key for s in SLIDERS].index("pose.yaw")] == 33.0


def test_transfer_modes():
    cur = HeadState()
    src = HeadState()
    src.pose.yaw, src.lighting.azimuth, src.placement.scale = 20.0, 45.0, 1.3
    out = transfer(cur, src, ["pose"])
    assert out.pose.yaw == 20.0 and out.lighting.azimuth == cur.lighting.azimuth and out.placement.scale == 1.0
    with pytest.raises(InputError):
        transfer(cur, src, ["hair"])


def test_host_binding(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert serving.resolve_host(None) == "127.0.0.1"
    assert serving.resolve_host("0.0.0.0") == "0.0.0.0"
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert serving.resolve_host(None) == "0.0.0.0"


@pytest.mark.parametrize("kw, needle", [(dict(num_images=9), "number of images"), (dict(prompt=""), "prompt"),
                                        (dict(steps=float("nan")), "finite"), (dict(scheduler="euler"), "scheduler")])
def test_generation_params_refused(kw, needle):
    args = dict(prompt="a person")
    args.update(kw)
    with pytest.raises(InputError, match=needle):
        GenerationParams(**args).validated()


def test_generate_without_weights_explains(head_path):
    from caphuman.studio.service import StudioService

    service = StudioService(head=head_path, weights=None, device="cpu")
    import numpy as np

    with pytest.raises(MissingWeightsError, match="--weights"):
        service.generate(np.zeros((64, 64, 3), np.uint8), HeadState(), GenerationParams(prompt="a person"))
    assert "not available" in service.environment().markdown()
    assert service.preview(HeadState(), None, 128).preview.shape == (128, 128, 3)


def test_lora_choice_swaps_and_removes_the_adapter(tiny_weights, tmp_path, monkeypatch):
    """LoRAs come from checkpoints/lora/; choosing 'none' again gives back the base model's image."""
    import numpy as np

    from caphuman.studio.generation import Generator
    from caphuman.testing.tiny_lora import write_tiny_lora

    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path))
    write_tiny_lora(tiny_weights, tmp_path / "lora" / "style.safetensors")
    gen = Generator(tiny_weights, "cpu")
    ref = (np.random.default_rng(0).uniform(0, 255, (80, 64, 3))).astype(np.uint8)
    hint = np.zeros((9, 64, 64), np.float32)

    def run(**kw):
        p = GenerationParams(prompt="a portrait", seed=5, steps=1, resolution=64, **kw).validated()
        return gen.generate(ref, hint, p)[0].image.astype(np.int16)

    base = run()
    styled = run(lora="style.safetensors", lora_scale=1.0)
    assert np.abs(styled - base).max() > 0
    assert np.array_equal(run(lora="none"), base)
    with pytest.raises(InputError, match="not in checkpoints/lora"):
        GenerationParams(prompt="x", lora="other.safetensors").validated()


def test_base_model_choice_from_checkpoints(head_path, tiny_weights, tmp_path, monkeypatch):
    import shutil

    import numpy as np

    from caphuman.studio.service import StudioService

    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path))
    shutil.copytree(tiny_weights, tmp_path / "toon")  # a second converted backbone
    svc = StudioService(head=head_path, weights=tiny_weights, device="cpu")
    assert list(svc.models)[0] == "model" and "toon" in svc.models
    photo = np.full((96, 96, 3), 128, np.uint8)
    p = dict(prompt="x", seed=1, steps=1, resolution=64)
    default, _ = svc.generate(photo, HeadState(), GenerationParams(**p))
    toon, _ = svc.generate(photo, HeadState(), GenerationParams(model="toon", **p))
    assert np.array_equal(default[0].image, toon[0].image)  # same weights copied: same image
    assert svc._extra[0] == "toon"
    with pytest.raises(InputError, match="unknown base model"):
        svc.generate(photo, HeadState(), GenerationParams(model="nope", **p))


def test_startup_download_runs_in_background_and_enables_generate(head_path, tiny_weights, tmp_path):
    import threading

    import numpy as np

    from caphuman.errors import CapHumanError
    from caphuman.studio.service import StudioService

    svc = StudioService(head=head_path, weights=None, device="cpu")
    release = threading.Event()

    def fake_download(target, log):
        assert target == "all"
        release.wait(10)
        return tiny_weights

    t = threading.Thread(target=svc.fetch_weights, args=(fake_download,))
    t.start()
    photo = np.full((96, 96, 3), 128, np.uint8)
    params = GenerationParams(prompt="x", seed=1, steps=1, resolution=64)
    with pytest.raises(MissingWeightsError, match="downloading in the background"):
        svc.generate(photo, HeadState(), params)  # the UI answers while the download runs
    assert svc.preview(HeadState(), None, 64) is not None
    release.set()
    t.join(30)
    images, _ = svc.generate(photo, HeadState(), params)
    assert images[0].image.shape == (64, 64, 3)

    def offline(target, log):
        raise CapHumanError("caphuman: not available offline")

    svc2 = StudioService(head=head_path, weights=None, device="cpu")
    svc2.fetch_weights(offline)
    with pytest.raises(MissingWeightsError, match="start-up download failed"):
        svc2.generate(photo, HeadState(), params)


def test_slider_values_rounded_and_preset_names():
    from caphuman.controls.state import HeadState
    from caphuman.studio.controls import on_screen, preset_name, values_from_state

    s = HeadState()
    s.pose.roll, s.pose.yaw, s.placement.shift_x = 4.399686, 30.2, -0.0123456
    s.expression_controls = {"smile": 0.5}
    vals = values_from_state(s)
    assert vals[:3] == [30.0, 0.0, 4.0]
    assert on_screen(s).placement.shift_x == -0.01
    assert preset_name(s) == "head-yaw30-roll4-smile05.json"
    assert preset_name(HeadState()) == "head-neutral.json"


def test_page_handlers_say_why_generate_is_off_and_keep_the_photo_in_use(head_path, tmp_path):
    import json

    from caphuman.studio.service import StudioService
    from demo.handlers import Handlers, new_session

    h = Handlers(StudioService(head=head_path))
    button, note, sweep = h.generate_status()
    assert button["interactive"] is False and "weights" in note
    assert sweep["interactive"] is False, "Generate sweep is off too when Generate is"
    # a photo without a face: nothing is in use, the Analysis box says so and what to do
    blank = tmp_path / "blank.png"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    out = h.upload_reference(new_session(), str(blank))
    assert "No usable face in blank.png" in out[1] and "No photo in use" in out[1] and "Try a photo" in out[1]
    assert isinstance(out[2], dict) and "none yet" in out[3]  # the head state box is left alone
    # after a usable photo, an unusable one says the previous photo is still in use
    astronaut = str(__import__("pathlib").Path(__file__).resolve().parents[1] / "assets/examples/astronaut.jpg")
    s, report, box, in_use, _ = h.upload_reference(new_session(), astronaut)
    msg = json.loads(box)
    assert msg["history"] == "reset" and msg["photo"] == "astronaut.jpg" and msg["fit"] == msg["state"]
    assert "astronaut.jpg" in report and "astronaut.jpg" in in_use
    s2, report, box, in_use, label = h.upload_reference(s, str(blank))
    assert "Still using the previous photo, astronaut.jpg" in report and "astronaut.jpg" in in_use
    assert "NOT in use" in label["label"] and s2["photo"] is s["photo"] and isinstance(box, dict)


def test_partial_preset_changes_only_what_it_names():
    import json

    import pytest as _pytest

    from caphuman.controls.state import HeadState
    from caphuman.errors import InputError
    from caphuman.studio.controls import merge_preset

    current = HeadState()
    current.pose.pitch, current.pose.roll = 5.0, 4.4
    current.placement.scale, current.placement.shift_x = 0.86, 0.03
    current.shape = [0.5, -0.2]
    m = merge_preset(current, '{"pose": {"yaw": 999}}')
    assert m.state.pose.yaw == 90 and m.state.pose.pitch == 5.0 and m.state.pose.roll == 4.4
    assert m.state.placement == current.placement and m.state.shape == current.shape
    assert m.changed == ["pose.yaw"] and any("999" in n and "using 90" in n for n in m.notes), m.notes
    other = {"made_from": "other.jpg", "pose": {"roll": -3.3}, "placement": {"scale": 2.5}, "shape": [1.0],
             "expression_controls": {"smile": 0.5}}
    m = merge_preset(current, json.dumps(other))
    assert m.made_from == "other.jpg" and m.state.pose.roll == -3.3 and m.state.expression_controls == {"smile": 0.5}
    assert m.state.placement.scale == 0.86 and m.state.shape == current.shape
    assert any("apply placement too" in n for n in m.notes)
    m = merge_preset(current, json.dumps(other), placement=True)
    assert m.state.placement.scale == 2.5 and m.state.placement.shift_x == 0.03  # shift not named: kept
    with _pytest.raises(InputError, match="unknown field"):
        merge_preset(current, '{"pose": {"yaww": 3}}')
    # made_from is informational everywhere a state is read (the CLI's --params too)
    assert HeadState.from_json(json.dumps({"made_from": "x.jpg", "pose": {"yaw": 3}})).pose.yaw == 3


def test_each_studio_image_is_reproduced_by_its_cli_recipe(head_path, tiny_weights, tmp_path):
    """Image 2 of a studio batch of 2 (seed S+1) equals `python -m caphuman generate --seed S+1
    --params <its state>` bit for bit: the studio makes each image as a batch of one."""
    import json
    import os
    import subprocess
    import sys

    import numpy as np
    from PIL import Image

    from caphuman.studio.service import StudioService
    from demo.handlers import Handlers, new_session

    root = __import__("pathlib").Path(__file__).resolve().parents[1]
    photo = str(root / "assets/examples/astronaut.jpg")
    h = Handlers(StudioService(head=head_path, weights=tiny_weights, device="cpu"))
    s, _, box, _, _ = h.upload_reference(new_session(), photo)
    state = json.dumps(json.loads(box)["state"])
    gallery, seed, note, history = h.generate(s, state, "a portrait", "", 7, False, 2, 7.0, 1.0, 0, 2, 64, "ddim",
                                              "default", "none", 1.0, progress=lambda *a, **k: None)
    assert seed == 7 and len(gallery) == 2 and note == ""
    assert gallery[1][1].startswith("astronaut.jpg · seed 8 · 2 steps · 64 px")
    recipe = s["history"][-1]["recipe"]
    assert "--seed 8" in recipe and "--size 64" in recipe and "--steps 2" in recipe
    params = tmp_path / "head-state.json"
    params.write_text(state)
    out = tmp_path / "seed8.png"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "caphuman", "generate", "--weights", tiny_weights, "--head", head_path,
                        "--reference", photo, "--params", str(params), "--prompt", "a portrait", "--seed", "8",
                        "--steps", "2", "--guidance", "7", "--strength", "1", "--tau", "0", "--size", "64",
                        "--scheduler", "ddim", "--device", "cpu", "--out", str(out)],
                       capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0, r.stderr[-2000:]
    with Image.open(gallery[1][0]) as a, Image.open(out) as b:
        studio_px, cli_px = np.asarray(a.convert("RGB")), np.asarray(b.convert("RGB"))
    assert np.array_equal(studio_px, cli_px), f"{(studio_px != cli_px).mean():.4%} of values differ"


def test_library_does_not_import_demo():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "caphuman"
    offenders = [str(p) for p in root.rglob("*.py") if "from demo" in p.read_text() or "import demo" in p.read_text()]
    assert not offenders
