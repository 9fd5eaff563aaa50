"""A person's path through the studio in headless Chromium: upload a photo, drag and key the yaw
slider, watch the preview change, generate with the tiny model, see the gallery."""

from __future__ import annotations

import io

import numpy as np
import pytest

import os

from browser import PREVIEW_SRC, chromium_page, chromium_path, wait_preview_change  # noqa: E402

# CI installs chromium (.ci/run) and must run this test; elsewhere a missing browser is a skip.
pytestmark = pytest.mark.skipif(chromium_path() is None and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (apt-get install -y chromium)")


def _pixels(page, src: str) -> np.ndarray:
    from PIL import Image

    if src.startswith("data:"):  # the live preview travels inline (no file on disk)
        import base64

        body = base64.b64decode(src.split(",", 1)[1])
    else:
        body = page.request.get(src).body()
    return np.asarray(Image.open(io.BytesIO(body)).convert("RGB"), np.int16)


def test_upload_drag_preview_generate(studio, example_photo, tiny_weights, tmp_path):
    url, _ = studio
    with chromium_page() as page:
        page.goto(url)
        first = wait_preview_change(page, "", 30000)  # the neutral head, rendered on load
        page.screenshot(path=str(tmp_path / "01_loaded.png"))

        # 1. upload a reference photo -> analysis report + a preview over the photo
        page.locator("#reference input[type=file]").set_input_files(example_photo)
        page.wait_for_function("() => (document.querySelector('#report textarea') || {}).value?.includes('detector')",
                               timeout=30000)
        with_photo = wait_preview_change(page, first, 30000)
        assert with_photo.startswith("data:image/jpeg;base64,")  # live previews write no files
        page.screenshot(path=str(tmp_path / "02_uploaded.png"))

        # 2. drag the yaw slider, then arrow keys -> new preview pixels each time
        yaw = page.locator("#slider-pose-yaw input[type=range]")
        box = yaw.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.5, box["y"] + box["height"] / 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.75, box["y"] + box["height"] / 2, steps=8)
        page.mouse.up()
        dragged = wait_preview_change(page, with_photo)
        assert float(yaw.input_value()) > 20
        yaw.focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        keyed = wait_preview_change(page, dragged)
        page.wait_for_function(f"() => document.querySelector('#slider-pose-yaw input[type=range]').value == '{float(yaw.input_value()):g}'")
        before, after = _pixels(page, with_photo), _pixels(page, keyed)
        assert before.shape == after.shape
        assert np.abs(before - after).max() > 60 and (np.abs(before - after).sum(-1) > 30).mean() > 0.01
        page.screenshot(path=str(tmp_path / "03_yaw.png"))

        # 3. generate with the tiny model (small and fast: 128 px, 2 steps, 2 images)
        page.locator("#resolution input").click()
        page.get_by_role("option", name="128", exact=True).click()
        for elem, value in (("#steps", "2"), ("#num-images", "2")):
            box_ = page.locator(f"{elem} input[type=number]")
            box_.fill(value)
            box_.press("Enter")
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelectorAll('#gallery img').length >= 2", timeout=60000)
        caption = page.locator("#gallery").inner_text()
        assert "seed" in caption and "identity" in caption
        page.screenshot(path=str(tmp_path / "04_generated.png"), full_page=True)
        print("screenshots:", tmp_path)
