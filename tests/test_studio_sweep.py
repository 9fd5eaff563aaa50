"""The studio's Sweep panel, through its handler functions (no browser): preview strip, generate with one
seed, contact sheet and zip of images + sidecars, refusals."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

gr = pytest.importorskip("gradio")
pytest.importorskip("diffusers")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def panel(head_path, tiny_weights):
    """(sweep handlers, session with the astronaut photo, the fitted head state as the page sends it)."""
    from caphuman.studio.service import StudioService
    from demo.handlers import Handlers, new_session
    from demo.sweep import SweepHandlers

    service = StudioService(head=head_path, weights=tiny_weights, device="cpu")
    out = Handlers(service).upload_reference(new_session(), str(ROOT / "assets" / "examples" / "astronaut.jpg"))
    import json

    box = json.loads(out[2])  # what the server hands the page: {"state", "payload", "nonce"}
    return SweepHandlers(service), out[0], json.dumps(box["state"])  # the page sends the state back


def _image(path):
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_preview_strip_shows_every_cell(panel):
    from demo.sweep import STRIP_CELL

    h, session, values = panel
    strip = _image(h.preview_strip(session, values, "pose.yaw", -60, 60, 3, "none", 0, 0, 1))
    assert strip.shape[1] > 3 * STRIP_CELL and strip.shape[0] > STRIP_CELL
    grid = _image(h.preview_strip(session, values, "pose.yaw", -60, 60, 3, "lighting.azimuth", -90, 90, 2))
    assert grid.shape[0] > 2 * STRIP_CELL  # a second control adds rows


def test_generate_sweep_one_seed_contact_sheet_and_zip(panel):
    h, session, values = panel
    gallery, downloads = h.generate_sweep(session, values, "a portrait", "", -1, 1, 7.0, 1.0, 0, 64, "ddim", "", "none", 1.0,
                                          "expression_controls.smile", 0, 1, 3, "none", 0, 0, 1)
    assert [cap.split(" · ")[0] for _, cap in gallery] == ["smile 0", "smile 0.5", "smile 1"]
    seeds = {cap.split("seed ")[1] for _, cap in gallery}
    assert len(seeds) == 1  # one seed (drawn once) for every cell
    sheet, archive = downloads
    assert sheet.endswith(".png") and _image(sheet).shape[1] > 3 * 64
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert "contact_sheet.png" in names and len([n for n in names if n.endswith(".json")]) == 3
        side = json.loads(zf.read("002_smile+1.json"))
    assert side["head_state"]["expression_controls"]["smile"] == 1.0 and str(side["seed"]) in seeds
    assert side["sweep"] == {"expression_controls.smile": 1.0} and side["parameters"]["num_images"] == 1


def test_sweep_refusals(panel):
    h, session, values = panel
    with pytest.raises(gr.Error, match="between -90 and 90"):
        h.preview_strip(session, values, "pose.yaw", -120, 60, 3, "none", 0, 0, 1)
    with pytest.raises(gr.Error, match="at most 24"):
        h.preview_strip(session, values, "pose.yaw", -60, 60, 12, "pose.pitch", -30, 30, 3)
    from demo.handlers import new_session

    with pytest.raises(gr.Error, match="reference photo"):
        h.generate_sweep(new_session(), values, "a portrait", "", 1, 1, 7.0, 1.0, 0, 64, "ddim", "", "none", 1.0,
                         "pose.yaw", -60, 60, 3, "none", 0, 0, 1)


def test_panel_is_on_the_page(head_path):
    from demo.launch import create_app

    _, demo = create_app(head=head_path, weights=None, device="cpu", warmup=False)
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"sweep", "sweep-preview", "sweep-generate", "sweep-strip", "sweep-downloads"} <= ids
