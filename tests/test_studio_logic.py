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


def test_page_handlers_keep_placement_and_say_why_generate_is_off(head_path, tmp_path):
    import json

    from caphuman.controls.state import HeadState
    from caphuman.studio.service import StudioService
    from demo.handlers import Handlers, new_session

    h = Handlers(StudioService(head=head_path))
    button, note = h.generate_status()
    assert button["interactive"] is False and "weights" in note
    s = new_session()
    fitted = HeadState()
    fitted.placement.scale, fitted.placement.shift_x = 0.86, 0.03
    s["reference"] = fitted.to_json(None)
    current = fitted.replace()
    current.pose.yaw = 40.0
    out = h.reset_neutral(s, current.to_json())
    msg = json.loads(out[1])
    assert msg["state"]["pose"]["yaw"] == 0 and msg["state"]["placement"]["scale"] == 0.86
    assert msg["payload"].startswith("gradio_api/file=")
    # a photo without a face: the controls stay, the Analysis box says what to do
    blank = tmp_path / "blank.png"
    import numpy as np
    from PIL import Image

    Image.fromarray(np.full((200, 200, 3), 128, np.uint8)).save(blank)
    out = h.upload_reference(new_session(), str(blank))
    assert "Try a photo" in out[1] and all(isinstance(o, dict) for o in out[3:])


def test_library_does_not_import_demo():
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[1] / "caphuman"
    offenders = [str(p) for p in root.rglob("*.py") if "from demo" in p.read_text() or "import demo" in p.read_text()]
    assert not offenders
