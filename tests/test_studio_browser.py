"""A person's path through the studio in headless Chromium (software WebGL): the live head is
drawn by the page and matches the server's render; slider key presses make no server request;
every way of changing a value reaches the one head state, the saved preset and Generate."""

from __future__ import annotations

import base64
import json
import os
import time

import numpy as np
import pytest

from browser import chromium_page, chromium_path  # noqa: E402

# CI installs chromium (.ci/run) and must run this test; elsewhere a missing browser is a skip.
pytestmark = pytest.mark.skipif(chromium_path() is None and not os.environ.get("CI"),
                                reason="Debian chromium is not installed (apt-get install -y chromium)")

READY = "() => window.CH && window.CH.ready && window.CH.ready()"


def _snapshot(page, state: dict, mode: int) -> np.ndarray:
    """The page's WebGL canvas for ``state`` (mode 0 shaded, 2 mask) as (H, W, 4) uint8, row 0 on top."""
    snap = page.evaluate("([s, m]) => CH.snapshot(s, m)", [state, mode])
    rgba = np.frombuffer(base64.b64decode(snap["rgba"]), np.uint8).reshape(snap["height"], snap["width"], 4)
    return rgba[::-1]


def _state(**kw):
    from caphuman.controls.state import HeadState

    s = HeadState()
    for k, v in kw.items():
        group, name = k.split("__")
        if group == "expr":
            s.expression_controls[name] = v
        else:
            setattr(getattr(s, group), name, v)
    return s


CASES = {
    "yaw+45": _state(pose__yaw=45.0), "yaw-45": _state(pose__yaw=-45.0),
    "pitch+30": _state(pose__pitch=30.0), "pitch-30": _state(pose__pitch=-30.0),
    "roll+25": _state(pose__roll=25.0), "jaw open": _state(pose__jaw=20.0),
    "smile": _state(expr__smile=1.0), "light right": _state(lighting__azimuth=90.0),
}


def test_browser_head_matches_server_render(studio):
    """Silhouette IoU >= 0.98 and the shading brighter on the same side, for a set of states."""
    url, service = studio
    with chromium_page() as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        for name, state in CASES.items():
            server = service.preview(state, None, 512)
            mask = _snapshot(page, state.to_dict(), 2)[..., 0] > 127
            ref = server.mask
            iou = (mask & ref).sum() / (mask | ref).sum()
            print(f"{name}: IoU {iou:.4f}")
            assert iou >= 0.98, f"{name}: silhouette IoU {iou:.4f}"
            shaded = _snapshot(page, state.to_dict(), 0)[..., :3].astype(np.float64).mean(-1)
            server_shade = np.clip(server.hint[6:9], 0, 1).mean(0) * 255
            both = mask & ref
            cols = np.nonzero(both.any(0))[0]
            mid = (cols.min() + cols.max()) // 2
            left, right = both.copy(), both.copy()
            left[:, mid:] = False
            right[:, :mid] = False
            page_side = shaded[right].mean() - shaded[left].mean()
            server_side = server_shade[right].mean() - server_shade[left].mean()
            if abs(server_side) > 5:
                assert np.sign(page_side) == np.sign(server_side), f"{name}: {page_side:.1f} vs {server_side:.1f}"
            # and the same overall brightness (per-vertex vs per-pixel albedo: a few levels apart)
            assert abs(shaded[both].mean() - server_shade[both].mean()) < 20, name


def _preset(page, tmp_path, expect: dict, timeout=15.0) -> dict:
    """Download "Save preset" until it carries ``expect`` (the commit is asynchronous); returns it."""
    deadline = time.time() + timeout
    while True:
        with page.expect_download() as info:
            page.locator("#save-preset").click()
        d = info.value
        path = tmp_path / d.suggested_filename
        d.save_as(path)
        data = json.loads(path.read_text())
        got = {k: _get(data, k) for k in expect}
        # values through JS numbers and JSON text: exact or within a decimal repr digit (~1e-15); slider
        # steps are >= 0.01, so 1e-6 tells "committed" from "not yet"
        if all(abs(got[k] - v) < 1e-6 for k, v in expect.items()):
            data["_name"] = d.suggested_filename
            data["_path"] = str(path)
            return data
        if time.time() > deadline:
            raise AssertionError(f"preset has {got}, expected {expect}")
        time.sleep(0.3)


def _get(state: dict, key: str) -> float:
    group, name = key.split(".")
    sub = {"pose": "pose", "place": "placement", "light": "lighting"}.get(group)
    if sub:
        return float(state[sub][name])
    return float((state.get("expression_controls") or {}).get(name, 0.0))


def _page_state(page) -> dict:
    return json.loads(page.evaluate("() => CH.json()"))


def _shown(page, key: str) -> float:
    return float(page.locator(f"#slider-{key.replace('.', '-')} input[type=range]").input_value())


def test_one_head_state_everywhere(studio, example_photo, tiny_weights, tmp_path):
    url, _ = studio
    with chromium_page((1440, 900)) as page:
        joins = []
        page.on("request", lambda r: joins.append(r.url) if "/queue/join" in r.url else None)
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        page.locator("#reference input[type=file]").set_input_files(example_photo)
        page.wait_for_function("() => document.querySelector('#report').innerText.includes('Head fitted')",
                               timeout=60000)
        page.wait_for_function("() => CH.ready() && CH.head.photo && CH.head.photo.image", timeout=30000)
        fitted = _page_state(page)
        page.screenshot(path=str(tmp_path / "01_uploaded.png"))
        time.sleep(1.0)

        # 1. 20 key presses on Yaw: the head follows in the page, no server request meanwhile;
        #    once the keys stop, ONE commit renders the authoritative hint/GLB/preset.
        yaw = page.locator("#slider-pose-yaw input[type=range]")
        yaw.focus()
        frames0 = page.evaluate("() => CH.stats.frames")
        n0 = len(joins)
        for _ in range(20):
            page.keyboard.press("ArrowRight")
        assert len(joins) == n0, "slider key presses must not call the server"
        assert page.evaluate("() => CH.stats.frames") >= frames0 + 10
        assert _page_state(page)["pose"]["yaw"] == _shown(page, "pose.yaw") == 20.0
        p = _preset(page, tmp_path, {"pose.yaw": 20.0})
        assert len(joins) - n0 == 1, "one commit after the keys stop"
        assert p["placement"] == fitted["placement"]
        assert p["_name"].startswith("head-yaw20")

        # 2. typing 30 + Enter
        box = page.locator("#slider-pose-yaw input[type=number]")
        box.fill("30")
        box.press("Enter")
        page.wait_for_function("() => CH.state().pose.yaw === 30")
        p30 = _preset(page, tmp_path, {"pose.yaw": 30.0})
        (tmp_path / "yaw30.json").write_text(json.dumps({k: v for k, v in p30.items() if not k.startswith("_")}))

        # 3. the slider's ↺: back to the photo's fitted yaw
        page.locator("#slider-pose-yaw button.reset-button").click()
        page.wait_for_function("() => CH.state().pose.yaw === CH.fit.pose.yaw")
        yaw_fit = fitted["pose"]["yaw"]
        _preset(page, tmp_path, {"pose.yaw": yaw_fit})

        # 4. five ArrowRight on Pitch
        #    (from the photo's fitted pitch: the range input's first step lands on its 1-degree grid)
        page.locator("#slider-pose-pitch input[type=range]").focus()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        pitch_now = _shown(page, "pose.pitch")
        assert abs(pitch_now - (fitted["pose"]["pitch"] + 5)) <= 1.0 and pitch_now == round(pitch_now)
        _preset(page, tmp_path, {"pose.pitch": pitch_now})

        # 5. drag Roll
        roll = page.locator("#slider-pose-roll input[type=range]")
        b = roll.bounding_box()
        page.mouse.move(b["x"] + b["width"] * 0.5, b["y"] + b["height"] / 2)
        page.mouse.down()
        page.mouse.move(b["x"] + b["width"] * 0.7, b["y"] + b["height"] / 2, steps=8)
        page.mouse.up()
        shown_roll = _shown(page, "pose.roll")
        assert shown_roll > 5
        page.wait_for_function(f"() => CH.state().pose.roll === {shown_roll}")
        _preset(page, tmp_path, {"pose.roll": shown_roll})

        # 6. named pose preset, then undo / redo (buttons and keys)
        page.locator("#pose-34-right").click()
        page.wait_for_function("() => CH.state().pose.yaw === 35 && CH.state().pose.roll === 0")
        _preset(page, tmp_path, {"pose.yaw": 35.0, "pose.pitch": 0.0})
        page.locator("#undo").click()
        page.wait_for_function(f"() => CH.state().pose.roll === {shown_roll}")
        assert _shown(page, "pose.roll") == shown_roll
        _preset(page, tmp_path, {"pose.roll": shown_roll, "pose.yaw": yaw_fit})
        page.locator("body").click(position={"x": 5, "y": 5})
        page.keyboard.press("Control+Shift+Z")
        page.wait_for_function("() => CH.state().pose.yaw === 35")
        _preset(page, tmp_path, {"pose.yaw": 35.0})

        # 7. reset to neutral keeps the fitted placement
        page.locator("button", has_text="Reset to neutral").click()
        page.wait_for_function("() => CH.state().pose.yaw === 0 && CH.state().pose.pitch === 0")
        p = _preset(page, tmp_path, {"pose.yaw": 0.0, "pose.pitch": 0.0})
        assert p["placement"] == fitted["placement"]

        # 8. load the yaw-30 preset
        with page.expect_file_chooser() as chooser:
            page.locator("#load-preset").click()
        chooser.value.set_files(str(tmp_path / "yaw30.json"))
        page.wait_for_function("() => CH.state().pose.yaw === 30")
        assert _shown(page, "pose.yaw") == 30.0
        _preset(page, tmp_path, {"pose.yaw": 30.0})
        page.screenshot(path=str(tmp_path / "02_yaw30.png"))

        # 9. Generate uses the state on screen (the caption repeats the pose asked)
        page.locator("#resolution input").click()
        page.get_by_role("option", name="128", exact=True).click()
        for elem, value in (("#steps", "2"), ("#num-images", "1")):
            b_ = page.locator(f"{elem} input[type=number]")
            b_.fill(value)
            b_.press("Enter")
        page.locator("#generate").click()
        page.wait_for_function("() => document.querySelectorAll('#gallery img').length >= 1", timeout=90000)
        caption = page.locator("#gallery").inner_text()
        assert "yaw 30.0" in caption and "identity" in caption, caption
        page.screenshot(path=str(tmp_path / "03_generated.png"), full_page=True)
        print("screenshots:", tmp_path)


def test_phone_layout_keeps_preview_visible(studio):
    url, _ = studio
    with chromium_page((390, 844)) as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        page.screenshot(path="/tmp/caphuman-phone-top.png")
        page.locator("#slider-pose-pitch").scroll_into_view_if_needed()
        canvas = page.locator("#live-canvas").bounding_box()
        pitch = page.locator("#slider-pose-pitch").bounding_box()
        page.screenshot(path="/tmp/caphuman-phone-sliders.png")
        assert canvas["y"] >= -1 and canvas["y"] + canvas["height"] <= 844 * 0.5 and canvas["height"] > 200
        assert canvas["y"] + canvas["height"] - 1 <= pitch["y"] < 844


def _eye_boxes(landmarks_px):
    """Each eye's opening in pixels (corners x upper/lower lid landmarks), as (c0, r0, c1, r1)."""
    lm = landmarks_px
    return [(int(lm[a, 0]) - 1, int(lm[list(up), 1].min()) - 2, int(lm[b, 0]) + 2, int(lm[list(low), 1].max()) + 3)
            for a, b, up, low in ((36, 39, (37, 38), (40, 41)), (42, 45, (43, 44), (46, 47)))]


def _dark_col(gray, box):
    c0, r0, c1, r1 = box
    rows, cols = np.nonzero(gray[r0:r1, c0:c1] < 110)
    return c0 + cols.mean() if len(cols) else float("nan")


def test_browser_gaze_and_blink_match_server_render(studio):
    """The live head turns the eyes and closes the lids like the server: silhouette, eye-box
    brightness, the iris moving the same way, a wink closing the same eye."""
    url, service = studio
    rest = service.preview(_state(), None, 512)
    boxes = _eye_boxes(rest.landmarks_px)
    cases = {"gaze right + half blink": _state(pose__eye_yaw=25.0, pose__eye_pitch=10.0, expr__eyes_closed=0.4),
             "gaze left": _state(pose__eye_yaw=-25.0), "wink left": _state(expr__wink_left=1.0),
             "rest": _state()}
    with chromium_page() as page:
        page.goto(url)
        page.wait_for_function(READY, timeout=30000)
        page_gray, server_gray = {}, {}
        for name, state in cases.items():
            server = service.preview(state, None, 512)
            mask = _snapshot(page, state.to_dict(), 2)[..., 0] > 127
            iou = (mask & server.mask).sum() / (mask | server.mask).sum()
            print(f"{name}: IoU {iou:.4f}")
            assert iou >= 0.98, f"{name}: silhouette IoU {iou:.4f}"
            page_gray[name] = _snapshot(page, state.to_dict(), 0)[..., :3].astype(np.float64).mean(-1)
            server_gray[name] = server.preview.astype(np.float64).mean(-1)
            for box in boxes:
                c0, r0, c1, r1 = box
                p, s = page_gray[name][r0:r1, c0:c1].mean(), server_gray[name][r0:r1, c0:c1].mean()
                print(f"  eye box {box}: page {p:.1f} server {s:.1f}")
                # two renderers (WebGL per-vertex vs the server's per-pixel albedo), not rounding: a design
                # bound in grey levels for a small box (the iris motion itself is checked below)
                assert abs(p - s) < 25, f"{name}: eye box brightness {p:.1f} vs {s:.1f}"
    for name, sign in (("gaze right + half blink", 1), ("gaze left", -1)):
        for box in boxes:
            moved_page = _dark_col(page_gray[name], box) - _dark_col(page_gray["rest"], box)
            moved_server = _dark_col(server_gray[name], box) - _dark_col(server_gray["rest"], box)
            print(f"{name}: iris moved {moved_page:.2f} px (page), {moved_server:.2f} px (server)")
            assert sign * moved_page > 0.5 and sign * moved_server > 0.5, name
    # a wink darkens / changes the head's left eye (image right) far more than its right eye
    change = [np.abs(page_gray["wink left"] - page_gray["rest"])[r0:r1, c0:c1].mean() for c0, r0, c1, r1 in boxes]
    print(f"wink left: eye-box change {change[0]:.1f} (image left) {change[1]:.1f} (image right)")
    assert change[1] > 3 * change[0] and change[1] > 5
