"""The studio as a designer uses it (issue 18), in headless Chromium at desktop and phone sizes:
the head stays on the face (placement apart from pose; resets, presets, the sliders' ↺ and undo
start from the photo's fit), the photo in use is always the one named, typed values are honest,
the phone layout leaves the page readable, drag turns the head, Stop stops a generation.

Screenshots go to the test's tmp dir and to ``$CAPHUMAN_SCREENSHOTS`` (default
/tmp/caphuman-issue18) so a person can look at them."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from browser import chromium_page, chromium_path  # noqa: E402

pytestmark = pytest.mark.skipif(chromium_path() is None and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (apt-get install -y chromium)")

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = str(ROOT / "assets" / "examples" / "astronaut.jpg")
READY = "() => window.CH && window.CH.ready && window.CH.ready()"
SHOTS = Path(os.environ.get("CAPHUMAN_SCREENSHOTS", "/tmp/caphuman-issue18"))


def _shot(page, tmp_path, name, full_page=False):
    SHOTS.mkdir(parents=True, exist_ok=True)
    for d in (tmp_path, SHOTS):
        page.screenshot(path=str(d / f"{name}.png"), full_page=full_page)


def _state(page) -> dict:
    return json.loads(page.evaluate("() => CH.json()"))


def _shown(page, key: str) -> float:
    return float(page.locator(f"#slider-{key.replace('.', '-')} input[type=range]").input_value())


def _upload(page, path, expect_photo=True):
    page.locator("#reference input[type=file]").set_input_files(path)
    name = Path(path).name
    if expect_photo:
        page.wait_for_function("(n) => CH.photo === n && CH.head && CH.head.photo && CH.head.photo.image && CH.ready()",
                               arg=name, timeout=60000)
        page.wait_for_function("(n) => document.querySelector('#report').innerText.includes(n)", arg=name,
                               timeout=30000)
    else:
        page.wait_for_function("(n) => document.querySelector('#report').innerText.includes('No usable face in ' + n)",
                               arg=name, timeout=60000)


def _load_preset(page, path):
    with page.expect_file_chooser() as chooser:
        page.locator("#load-preset").click()
    chooser.value.set_files(str(path))


def _blank(tmp_path) -> str:
    from PIL import Image

    p = tmp_path / "wall.png"
    Image.fromarray(np.full((240, 240, 3), 128, np.uint8)).save(p)
    return str(p)


def _open_tab(page, name):
    page.locator("#controls-tabs button[role=tab]", has_text=name).click()


def test_state_model_placement_resets_presets_undo(studio, tmp_path):
    url, _ = studio
    with chromium_page((1440, 900)) as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        # nothing to undo at page load
        page.wait_for_function("() => document.querySelector('#undo').disabled === true", timeout=5000)
        _upload(page, ASTRONAUT)
        fit = page.evaluate("() => CH.fit")
        assert abs(fit["placement"]["scale"] - 1.0) > 0.01, "the fit places the head on the face"
        # Undo right after upload: nothing to undo (the history starts at the photo's fit)
        assert page.locator("#undo").is_disabled()
        assert page.evaluate("() => CH.undo()") is False
        assert _state(page)["placement"] == fit["placement"]
        roll_fit = fit["pose"]["roll"]
        assert roll_fit != round(roll_fit), "the example's fitted roll is not a whole degree"
        assert _state(page)["pose"]["roll"] == roll_fit, "the state keeps the fitted value, the slider its step"
        assert _shown(page, "pose.roll") == round(roll_fit)

        # the slider's ↺ returns to the photo's fit (not the page default 0)
        page.locator("#slider-pose-roll input[type=range]").focus()
        for _ in range(6):
            page.keyboard.press("ArrowRight")
        page.wait_for_function("() => CH.state().pose.roll >= 8")
        page.locator("#slider-pose-roll button.reset-button").click()
        page.wait_for_function("(r) => CH.state().pose.roll === r", arg=roll_fit)
        assert _shown(page, "pose.roll") == round(roll_fit)

        # Reset to neutral: pose / expression / light neutral; placement stays the fit
        page.locator("#pose-34-right").click()
        page.wait_for_function("() => CH.state().pose.yaw === 35")
        page.locator("#reset-neutral").click()
        page.wait_for_function("() => CH.state().pose.yaw === 0 && CH.state().pose.roll === 0")
        assert _state(page)["placement"] == fit["placement"]
        # Reset to photo: the fitted pose again, placement untouched
        page.locator("#reset-photo").click()
        page.wait_for_function("(r) => CH.state().pose.roll === r", arg=roll_fit)
        assert _state(page)["pose"] == fit["pose"] and _state(page)["placement"] == fit["placement"]

        # pitch 5 (keys), then a partial preset {"pose": {"yaw": 999}}: only yaw changes, clamped, said
        page.locator("#slider-pose-pitch input[type=range]").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        pitch = fit["pose"]["pitch"]
        page.wait_for_function("(p) => CH.state().pose.pitch !== p", arg=pitch)
        before = _state(page)
        partial = tmp_path / "partial.json"
        partial.write_text('{"pose": {"yaw": 999}}')
        _load_preset(page, partial)
        page.wait_for_function("() => CH.state().pose.yaw === 90", timeout=15000)
        after = _state(page)
        for k in ("pitch", "roll", "jaw", "eye_yaw", "eye_pitch"):
            assert after["pose"][k] == before["pose"][k], k
        assert after["placement"] == before["placement"] and after["lighting"] == before["lighting"]
        assert after["expression_controls"] == before["expression_controls"]
        note = page.locator("#preset-note").inner_text()
        assert "pose.yaw" in note and "999" in note and "using 90" in note, note

        # a preset made on another photo: its placement is not applied unless asked
        other = dict(json.loads(json.dumps(before)), made_from="someone-else.jpg")
        other["placement"] = {"scale": 2.5, "shift_x": 0.4, "shift_y": -0.3}
        other["pose"]["roll"] = 4.4
        other_path = tmp_path / "other.json"
        other_path.write_text(json.dumps(other))
        _load_preset(page, other_path)
        page.wait_for_function("() => CH.state().pose.roll === 4.4", timeout=15000)
        assert _state(page)["placement"] == fit["placement"], "placement from another photo must not apply"
        assert _shown(page, "pose.roll") == 4.0, "the slider shows the step, the state keeps 4.4"
        note = page.locator("#preset-note").inner_text()
        assert "someone-else.jpg" in note and "apply placement too" in note, note
        _shot(page, tmp_path, "desktop_01_preset_other_photo")
        page.locator("#preset-placement input").check()
        _load_preset(page, other_path)
        page.wait_for_function("() => CH.state().placement.scale === 2.5", timeout=15000)
        # undo goes back one step (placement from the fit), redo forward again
        page.locator("#undo").click()
        page.wait_for_function("(s) => CH.state().placement.scale === s", arg=fit["placement"]["scale"])
        page.locator("#redo").click()
        page.wait_for_function("() => CH.state().placement.scale === 2.5")
        # only the placement control puts the head back on the face
        _open_tab(page, "Light & position")
        page.locator("#reset-placement").click()
        page.wait_for_function("(s) => CH.state().placement.scale === s", arg=fit["placement"]["scale"])
        assert _state(page)["placement"] == fit["placement"]
        assert _state(page)["pose"]["roll"] == 4.4
        # the saved preset names the photo it was made from
        page.wait_for_function("() => { const a = document.querySelector('#save-preset a, a#save-preset');"
                               " return !a || true; }")
        time.sleep(1.5)
        with page.expect_download() as info:
            page.locator("#save-preset").click()
        assert info.value.suggested_filename.endswith("-astronaut.json"), info.value.suggested_filename
        saved = json.loads(Path(info.value.path()).read_text())
        assert saved["made_from"] == "astronaut.jpg"
        _shot(page, tmp_path, "desktop_02_state_model")


def test_photo_in_use_is_always_named(studio, tmp_path):
    url, _ = studio
    wall = _blank(tmp_path)
    with chromium_page((1440, 900)) as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        # a first photo without a face: nothing in use, Generate says so once
        _upload(page, wall, expect_photo=False)
        assert "No photo in use" in page.locator("#report").inner_text()
        assert "none yet" in page.locator("#photo-in-use").inner_text()
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelector('#generate-note').innerText.includes('no usable face')",
                               timeout=30000)
        note = page.locator("#generate-note").inner_text()
        assert note.count("upload a photo") == 1 and "wall.png" in note, note
        page.wait_for_function("() => !document.querySelector('#generate').disabled", timeout=15000)
        # then the astronaut, then the wall again: the page says it still uses the astronaut
        _upload(page, ASTRONAUT)
        fit = page.evaluate("() => CH.fit")
        _upload(page, wall, expect_photo=False)
        report = page.locator("#report").inner_text()
        assert "Still using the previous photo, astronaut.jpg" in report, report
        assert "astronaut.jpg" in page.locator("#photo-in-use").inner_text()
        assert "NOT in use" in page.locator("#reference").inner_text()
        assert page.evaluate("() => CH.photo") == "astronaut.jpg"
        assert page.evaluate("() => CH.fit") == fit
        assert "/tmp" not in page.locator("#status").inner_text(), "no server paths in the status line"
        _shot(page, tmp_path, "desktop_03_photo_not_in_use")
        # Generate uses (and names) the photo in use
        page.locator("#resolution input").click()
        page.get_by_role("option", name="64", exact=True).click()
        for elem, value in (("#steps", "1"), ("#num-images", "1")):
            b = page.locator(f"{elem} input[type=number]")
            b.fill(value)
            b.press("Enter")
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelectorAll('#gallery img').length >= 1", timeout=120000)
        caption = page.locator("#gallery").inner_text()
        assert "\nastronaut.jpg · seed" in caption, caption


def test_typed_values_are_honest(studio, tmp_path):
    url, _ = studio
    with chromium_page((1440, 900)) as page:
        joins = []
        page.on("request", lambda r: joins.append(r.url) if "/queue/join" in r.url else None)
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        time.sleep(1.5)
        box = page.locator("#slider-pose-roll input[type=number]")
        # an incomplete number does not move the head
        box.click()
        page.keyboard.press("Control+a")
        page.keyboard.type("-")
        assert _state(page)["pose"]["roll"] == 0
        box.press("Tab")
        page.wait_for_function("() => document.querySelector('#slider-pose-roll .ch-note')")
        assert _state(page)["pose"]["roll"] == 0 and box.input_value() == "0"
        assert "not a number" in page.locator("#slider-pose-roll .ch-note").inner_text()
        # 200: corrected in the box, with a short note; the head uses 60
        box.fill("200")
        box.press("Enter")
        page.wait_for_function("() => CH.state().pose.roll === 60")
        assert box.input_value() == "60" and _shown(page, "pose.roll") == 60
        note = page.locator("#slider-pose-roll .ch-note").inner_text()
        assert "200 is outside -60 to 60; using 60" == note, note
        _shot(page, tmp_path, "desktop_04_typed_200")
        # a typed value in range with more precision than the step: the state keeps it
        yaw_box = page.locator("#slider-pose-yaw input[type=number]")
        yaw_box.fill("12.5")
        yaw_box.press("Enter")
        page.wait_for_function("() => CH.state().pose.yaw === 12.5")
        # every size the CLI accepts is offered; picking 64 gives 64
        page.locator("#resolution input").click()
        options = page.get_by_role("option").all_inner_texts()
        assert [int(o.replace("✓", "").strip()) for o in options] == list(range(64, 1025, 64)), options
        page.get_by_role("option", name="64", exact=True).click()
        assert page.locator("#resolution input").input_value() == "64"
        # typed values commit at once (Enter is a release), a key press never does
        n = len(joins)
        page.locator("#slider-pose-pitch input[type=range]").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        assert len(joins) == n


def test_drag_on_the_head_turns_it(studio, tmp_path):
    url, _ = studio
    with chromium_page((1440, 900)) as page:
        joins = []
        page.on("request", lambda r: joins.append(r.url) if "/queue/join" in r.url else None)
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        time.sleep(1.5)
        c = page.locator("#live-canvas").bounding_box()
        cx, cy = c["x"] + c["width"] / 2, c["y"] + c["height"] / 2
        n = len(joins)
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + c["width"] * 0.2, cy - c["height"] * 0.1, steps=8)
        assert len(joins) == n, "no server call while dragging"
        s = _state(page)
        # 0.2 of the width is 36 degrees of yaw, 0.1 of the height 12 degrees of pitch (rounded to 1 degree)
        assert s["pose"]["yaw"] == 36 and s["pose"]["pitch"] == 12 and s["pose"]["roll"] == 0, s["pose"]
        assert _shown(page, "pose.yaw") == 36
        page.mouse.up()
        page.wait_for_function("(n) => CH.stats.commits >= 1", arg=n, timeout=5000)
        # Shift + drag: roll only
        page.keyboard.down("Shift")
        page.mouse.move(cx, cy)
        page.mouse.down()
        page.mouse.move(cx + c["width"] * 0.1, cy, steps=4)
        page.mouse.up()
        page.keyboard.up("Shift")
        s = _state(page)
        assert s["pose"]["roll"] == 12 and s["pose"]["yaw"] == 36, s["pose"]
        # undo takes the whole drag back
        page.keyboard.press("Control+z")
        page.wait_for_function("() => CH.state().pose.roll === 0 && CH.state().pose.yaw === 36")
        assert "Drag the head" in page.locator("#head-help").inner_text()
        _shot(page, tmp_path, "desktop_05_dragged")


def test_generate_progress_stop_and_history(studio, tmp_path):
    url, _ = studio
    with chromium_page((1440, 900)) as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        _upload(page, ASTRONAUT)
        page.locator("#resolution input").click()
        page.get_by_role("option", name="64", exact=True).click()
        for elem, value in (("#steps", "150"), ("#num-images", "2")):
            b = page.locator(f"{elem} input[type=number]")
            b.fill(value)
            b.press("Enter")
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelector('#generate').disabled", timeout=10000)
        assert not page.locator("#stop").is_disabled()
        page.wait_for_function("() => /image 1 of 2 · step \\d+\\/150/.test(document.body.innerText)", timeout=120000)
        _shot(page, tmp_path, "desktop_06_progress")
        page.locator("#stop").click()
        page.wait_for_function("() => document.querySelector('#generate-note').innerText.includes('Stopped at image')",
                               timeout=60000)
        page.wait_for_function("() => !document.querySelector('#generate').disabled", timeout=15000)
        assert page.locator("#stop").is_disabled()
        # the worker is free: the next run starts and finishes at once
        page.locator("#steps input[type=number]").fill("2")
        page.locator("#steps input[type=number]").press("Enter")
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelectorAll('#gallery img').length >= 2", timeout=120000)
        page.wait_for_function("() => !document.querySelector('#generate').disabled", timeout=30000)
        caption = page.locator("#gallery").inner_text()
        assert "astronaut.jpg · seed" in caption and "2 steps · 64 px" in caption, caption
        page.wait_for_function("() => document.querySelectorAll('#history img').length >= 2", timeout=15000)
        page.locator("#history img").first.click()
        page.wait_for_function("() => document.querySelector('#recipe').innerText.includes('--seed')", timeout=15000)
        recipe = page.locator("#recipe").inner_text()
        assert "python -m caphuman generate" in recipe and "--steps 2" in recipe and "--size 64" in recipe, recipe
        # send the image's settings back to the sliders
        page.locator("#pose-34-left").click()
        page.wait_for_function("() => CH.state().pose.yaw === -35")
        page.keyboard.press("Escape")
        page.locator("#send-back").click()
        page.wait_for_function("() => CH.state().pose.yaw !== -35", timeout=15000)
        _shot(page, tmp_path, "desktop_07_history", full_page=True)


@pytest.mark.parametrize("size", [(390, 844), (360, 740)])
def test_phone_layout_nothing_hidden(studio, tmp_path, size):
    url, _ = studio
    w, h = size
    with chromium_page(size) as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        _upload(page, ASTRONAUT)
        page.evaluate("() => window.scrollTo(0, 0)")
        time.sleep(0.5)
        _shot(page, tmp_path, f"phone{w}_01_top")
        head = page.locator("#live-head").bounding_box()
        canvas = page.locator("#live-canvas").bounding_box()
        assert canvas["height"] > 0.25 * h and canvas["y"] + canvas["height"] <= head["y"] + head["height"] + 0.5, \
            (canvas, head)
        below = head["y"] + head["height"]
        for sel in ("#page-title", "#status", "#reference"):
            box = page.locator(sel).bounding_box()
            assert box["y"] >= below - 1, f"{sel} starts under the pinned head ({box['y']:.0f} < {below:.0f})"
        # the controls: sliders scrolled up under the head, the tab bar stays reachable below it
        page.locator("#slider-pose-eye_pitch").scroll_into_view_if_needed()
        page.evaluate("() => window.scrollBy(0, document.querySelector('#controls-tabs').getBoundingClientRect().top"
                      " - document.querySelector('#live-head').getBoundingClientRect().bottom + 120)")
        time.sleep(0.6)
        bar = page.locator("#controls-tabs .tab-wrapper").bounding_box()
        assert below - 1 <= bar["y"] <= below + 8, (bar, below)
        page.locator("#controls-tabs button[role=tab]", has_text="Expression").click()
        page.wait_for_function("() => document.querySelector('#slider-expr-smile')", timeout=5000)
        _shot(page, tmp_path, f"phone{w}_02_tabs")
        # the pose presets fit the screen
        page.evaluate("() => document.querySelector('#pose-look-down').scrollIntoView({block: 'center'})")
        time.sleep(0.4)
        below = page.locator("#live-head").bounding_box()["height"]
        for b in page.locator(".pose-presets button").all():
            box = b.bounding_box()
            assert box["x"] >= 0 and box["x"] + box["width"] <= w, box  # inside the screen, none cut off
            assert below <= box["y"] and box["y"] + box["height"] <= h, box  # not under the pinned head
        _shot(page, tmp_path, f"phone{w}_03_presets")
