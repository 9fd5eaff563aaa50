"""Studio requests that used to fail badly (issue 19): a raw HTTP call with too few values, refused
inputs leaving tracebacks in the server log, a float TIFF mangled by Gradio before the intake."""

from __future__ import annotations

import json
import logging
import urllib.request

import numpy as np
import pytest

pytest.importorskip("gradio")


def _call(url: str, api: str, data: list) -> tuple[str, str]:
    """Raw HTTP (no gradio_client): POST the values, read the event stream; (event, data) of the last event."""
    req = urllib.request.Request(f"{url}gradio_api/call/{api}", data=json.dumps({"data": data}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        event_id = json.loads(r.read())["event_id"]
    with urllib.request.urlopen(f"{url}gradio_api/call/{api}/{event_id}", timeout=120) as r:
        text = r.read().decode()
    events = [b for b in text.strip().split("\n\n") if b.strip()]
    last = dict(line.split(": ", 1) for line in events[-1].splitlines() if ": " in line)
    data = json.loads(last.get("data", "null"))
    return last.get("event", ""), (data.get("error") if isinstance(data, dict) else data)


def test_raw_preview_with_a_short_body_says_what_is_missing(studio):
    url, _ = studio
    event, data = _call(url, "preview", ['{"format": "caphuman.head_state/1"}'])
    assert event == "error"
    message = data
    assert message and "/preview takes 4 input values (head_state, backdrop, size, return_hint)" in message
    assert "sent 1" in message
    event, data = _call(url, "preview", [])
    assert event == "error" and "sent 0" in data


def test_refused_inputs_leave_one_log_line_and_no_traceback(studio, capfd, caplog, tmp_path):
    url, _ = studio
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    caplog.set_level(logging.INFO, logger="caphuman.studio")
    capfd.readouterr()
    calls = [("preview", ["{not json", None, 256, False]), ("preview", ["{}", None, 10 ** 9, False]),
             ("preview", ["{}"]),
             ("analyze", [{"path": str(junk), "meta": {"_type": "gradio.FileData"}}])]
    for api, data in calls:
        event, payload = _call(url, api, data)
        assert event == "error" and payload, (api, data)
    out, err = capfd.readouterr()
    assert "Traceback" not in out + err
    refused = [r for r in caplog.records if r.name == "caphuman.studio" and "refused" in r.getMessage()]
    assert len(refused) >= len(calls) - 1  # the uploaded junk may be refused by Gradio's upload check first
    assert all(r.exc_info is None for r in refused)


def test_float_tiff_reaches_the_intake_unconverted(tmp_path):
    """Gradio's own convert("RGB") turns a [0, 1] float TIFF into a black-and-white picture; the
    studio's photo inputs take the file as sent, and the intake reads it right."""
    from gradio import image_utils
    from gradio.data_classes import ImageData
    from PIL import Image

    from caphuman.face.detection import OpenCVDetector, detect_faces
    from caphuman.face.intake import load_image
    from demo.ui import build_demo
    from caphuman.studio.service import StudioService

    grey = np.asarray(Image.open("assets/examples/grace_hopper.jpg").convert("L")).astype(np.float32) / 255
    path = tmp_path / "portrait.tif"
    Image.fromarray(grey, mode="F").save(path)
    demo = build_demo(StudioService(head="builtin", weights=None, device="cpu"))
    photos = [b for b in demo.blocks.values() if type(b).__name__ == "Image"
              and getattr(b, "label", "") in ("Reference photo", "Pose-reference photo")]
    assert len(photos) == 2 and all(b.image_mode is None for b in photos)
    payload = ImageData(path=str(path), orig_name="portrait.tif")
    passed = image_utils.preprocess_image(payload, cache_dir=str(tmp_path), format="webp", image_mode=None,
                                          type="filepath")
    assert passed == str(path)  # handed over untouched
    rgb = load_image(passed)
    np.testing.assert_allclose(rgb[..., 0] / 255.0, grey, atol=0.5 / 255 + 1e-6)  # uint8 rounding only
    assert len(detect_faces(rgb, detector=OpenCVDetector()).faces) == 1
    mangled = np.asarray(Image.open(image_utils.preprocess_image(
        payload, cache_dir=str(tmp_path), format="webp", image_mode="RGB", type="filepath")))
    assert mangled.max() <= 1  # what the default image_mode did to it
