"""The named endpoints through gradio_client, including bad input (clear errors, no tracebacks)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import gradio_client  # noqa: E402
from gradio_client import Client, handle_file  # noqa: E402


@pytest.fixture(scope="module")
def client(studio):
    url, _ = studio
    return Client(url, verbose=False)


def test_api_lists_three_named_endpoints(client):
    info = client.view_api(return_format="dict", print_info=False)
    names = set(info["named_endpoints"])
    assert {"/analyze", "/preview", "/generate"} <= names
    assert len(info["named_endpoints"]) == 3, names  # UI events stay private


def test_analyze_then_preview(client, example_photo):
    frame, state_json, report = client.predict(handle_file(example_photo), api_name="/analyze")
    state = json.loads(state_json)
    assert state["format"] == "caphuman.head_state/1"
    assert "detector" in report
    state["pose"]["yaw"] = 30.0
    out = client.predict(json.dumps(state), handle_file(frame), 256, True, api_name="/preview")
    preview, normals, albedo, shading, hint = out
    hint = np.load(hint)
    assert hint.shape == (9, 256, 256) and hint.dtype == np.float16
    from PIL import Image

    assert Image.open(preview).size == (256, 256)
    state["pose"]["yaw"] = -30.0
    other = client.predict(json.dumps(state), None, 256, True, api_name="/preview")
    assert not np.array_equal(np.load(other[4]), hint)


@pytest.mark.parametrize("bad, needle", [
    ('{"pose": {"yaw": NaN}}', "finite"),
    ('{"pose": {"yaw": "left"}}', "number"),
    ("{not json", "JSON"),
    ('{"pose": {"tilt": 3}}', "unknown"),
])
def test_preview_rejects_bad_state(client, bad, needle):
    with pytest.raises(Exception) as err:
        client.predict(bad, None, 128, api_name="/preview")
    assert needle.lower() in str(err.value).lower()
    assert "Traceback" not in str(err.value)


def test_preview_clamps_huge_values(client):
    out = client.predict(json.dumps({"pose": {"yaw": 1e30}}), None, 128, return_hint=True, api_name="/preview")
    assert np.load(out[4]).shape == (9, 128, 128)


def test_preview_hint_only_when_asked(client):
    out = client.predict("{}", None, 128, api_name="/preview")  # the 3-argument call still works
    assert out[4] is None
    from PIL import Image

    assert Image.open(out[0]).format == "JPEG"


def test_preview_rejects_bad_size(client):
    with pytest.raises(Exception, match="between 64 and 1024"):
        client.predict("{}", None, 100000, api_name="/preview")


def test_analyze_rejects_corrupt_upload(client, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg" * 10)
    with pytest.raises(Exception) as err:
        client.predict(handle_file(str(bad)), api_name="/analyze")
    assert "image" in str(err.value).lower()


def _generate(client, photo, **over):
    args = dict(prompt="a photo of a person", negative_prompt="", seed=7, steps=2, guidance=2.0, strength=1.0,
                tau=0, num_images=2, resolution=128, scheduler="ddim")
    args.update(over)
    return client.predict(handle_file(photo), "{}", *args.values(), api_name="/generate")


@pytest.mark.parametrize("over, needle", [
    (dict(num_images=9), "number of images"),
    (dict(prompt="   "), "prompt"),
    (dict(guidance=1e30), "between"),  # JSON cannot carry NaN numbers; NaN in head_state is tested below
    (dict(resolution=100), "multiple of 64"),
])
def test_generate_rejects_bad_parameters(client, example_photo, over, needle):
    with pytest.raises(Exception) as err:
        _generate(client, example_photo, **over)
    assert needle in str(err.value)


def test_generate_with_tiny_model(client, example_photo, tiny_weights):
    gallery, seed = _generate(client, example_photo)
    assert seed == 7
    assert len(gallery) == 2
    captions = [item["caption"] for item in gallery]
    assert captions[0].startswith("seed 7 ·") and captions[1].startswith("seed 8 ·")
    assert "identity" in captions[0]
    from PIL import Image

    assert Image.open(gallery[0]["image"]).size == (128, 128)


def test_generate_rejects_nan_head_state(client, example_photo):
    with pytest.raises(Exception, match="finite"):
        client.predict(handle_file(example_photo), '{"lighting": {"azimuth": Infinity}}', "a person", "", 1, 2,
                       2.0, 1.0, 0, 1, 128, "ddim", api_name="/generate")
