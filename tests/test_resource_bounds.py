"""Memory and disk stay bounded (issue 10): the decode budget, the analysis gate, what a
``/preview`` call writes, the studio's byte-bounded output ring, its folder removed at exit, and a
short load smoke test (8 API clients x 10 s on loopback: no errors, flat memory)."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caphuman.errors import InputError
from caphuman.face import intake
from caphuman.face.intake import load_image

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- helpers
def png_header(width: int, height: int, colour_type: int = 2) -> bytes:
    """A PNG that declares ``width`` x ``height`` (8-bit; 2 = RGB, 0 = grey) and holds no pixels:
    enough to test what is decided from the header alone."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def tree_bytes(*roots) -> int:
    seen, total = set(), 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                if p not in seen:
                    seen.add(p)
                    try:
                        total += os.lstat(p).st_size
                    except OSError:
                        pass
    return total


# ---------------------------------------------------------------------------- decode budget
def test_header_over_the_pixel_cap_is_refused_before_decoding():
    with pytest.raises(InputError, match=r"too large \(more than 250,000,000 pixels\)"):
        load_image(png_header(16000, 16000))


def test_rgb_png_over_the_memory_budget_is_refused_with_the_limit(monkeypatch):
    monkeypatch.delenv("CAPHUMAN_DECODE_BUDGET_MB", raising=False)
    with pytest.raises(InputError) as err:
        load_image(png_header(15800, 15800))  # 249.6 Mpx: under the pixel cap, ~952 MB to decode
    assert str(err.value) == (
        "image: 15800x15800 PNG would need about 952 MB of memory to decode, over the 512 MB limit; "
        "downscale it (a face photo needs at most about 40 megapixels, e.g. 7000x5000) or save it as JPEG")


def test_budget_depends_on_the_pixel_format(monkeypatch):
    monkeypatch.setenv("CAPHUMAN_DECODE_BUDGET_MB", "1")
    rgb = encoded(Image.new("RGB", (600, 600), (10, 20, 30)), "PNG")  # 1.44 MB held while decoding
    with pytest.raises(InputError, match="over the 1 MB limit"):
        load_image(rgb)
    grey = encoded(Image.new("L", (600, 600), 90), "PNG")  # 0.36 MB
    assert load_image(grey).shape == (600, 600, 3)
    assert load_image(encoded(Image.new("RGB", (400, 400)), "PNG")).shape == (400, 400, 3)


def test_big_jpeg_is_decoded_at_reduced_size(monkeypatch):
    """Over the working budget a JPEG decodes at 1/2..1/8 scale: a 1 MB budget refuses the PNG
    of the same picture but accepts the JPEG (decoded at 400x300, then resized)."""
    monkeypatch.setattr(intake, "WORKING_PIXELS", 100_000)
    monkeypatch.setenv("CAPHUMAN_DECODE_BUDGET_MB", "1")
    yy, xx = np.mgrid[0:1200, 0:1600]
    pic = Image.fromarray(np.stack([xx % 256, yy % 256, (xx + yy) % 256], -1).astype(np.uint8))
    with pytest.raises(InputError, match="PNG would need about 7 MB"):
        load_image(encoded(pic, "PNG"), max_side=None)
    seen = []
    from PIL import JpegImagePlugin

    orig = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = orig(self, mode, size)
        seen.append(self.size)
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    out = load_image(encoded(pic, "JPEG", quality=90), max_side=None)
    assert seen == [(400, 300)]
    assert out.shape == (274, 365, 3)  # WORKING_PIXELS: sqrt(100k / 1.92M) of 1600x1200
    assert 0 < out.mean() < 255


def test_reduced_jpeg_keeps_its_exif_orientation(monkeypatch):
    monkeypatch.setattr(intake, "WORKING_PIXELS", 50_000)
    img = Image.new("RGB", (1600, 800), (200, 30, 30))
    img.paste((30, 30, 200), (0, 0, 800, 800))  # left half blue
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise: the blue half ends up on top
    out = load_image(encoded(img, "JPEG", exif=exif), max_side=400)
    assert out.shape == (316, 158, 3)  # portrait, within 50k pixels
    top, bottom = out[:100].mean((0, 1)), out[-100:].mean((0, 1))
    assert top[2] > top[0] and bottom[0] > bottom[2]


def test_alpha_and_palette_images_are_downscaled_before_conversion():
    rgba = Image.new("RGBA", (3000, 1000), (255, 0, 0, 0))  # fully transparent: white after intake
    out = load_image(encoded(rgba, "PNG"), max_side=300)
    assert out.shape == (100, 300, 3) and out.min() >= 250
    pal = Image.new("P", (2000, 2000), 3)
    pal.putpalette([0, 0, 0] * 3 + [10, 200, 30] + [0, 0, 0] * 252)
    out = load_image(encoded(pal, "PNG"), max_side=100)
    assert out.shape == (100, 100, 3) and tuple(out[50, 50]) == (10, 200, 30)


def test_memory_is_handed_back():
    assert intake.release_memory() is (sys.platform.startswith("linux"))


def test_uint8_arrays_are_not_copied_through_float():
    a = np.zeros((64, 64, 3), np.uint8)
    assert intake._array_to_rgb_uint8(a) is a
    f = np.full((300, 20, 4), 0.5)  # converted band by band, same result as one pass
    assert intake._array_to_rgb_uint8(f).shape == (300, 20, 3)
    assert np.all(intake._array_to_rgb_uint8(f) == 191)  # 0.5 * 0.5 + 0.5 over white


def test_analysis_cache_is_bounded_by_bytes():
    from types import SimpleNamespace

    from caphuman.face.analysis import AnalysisCache

    cache = AnalysisCache(max_items=16, max_bytes=3 * 1000 * 1000)
    for k in range(5):
        cache.put((k,), SimpleNamespace(image=np.zeros(1000 * 1000, np.uint8), frame=None, face_only=None,
                                        facenet=None, clip_tokens=None))
    assert [k for (k,) in cache._items] == [2, 3, 4] and cache.nbytes == 3 * 1000 * 1000


# ---------------------------------------------------------------------------- disk ring
def test_ring_is_bounded_by_bytes_and_names_never_repeat(monkeypatch):
    from demo import files

    monkeypatch.setenv(files.RING_ENV, str(20_000 / (1024 * 1024)))  # 20 kB
    files.remove()
    paths = [Path(files.write_bytes(bytes(4000), "seed7", ".png")) for _ in range(12)]
    assert len(set(p.name for p in paths)) == 12  # the same stem (a seed) never reuses a name
    alive = [p for p in paths if p.exists()]
    assert alive == paths[-5:]  # oldest deleted first; 5 x 4000 bytes fit
    usage = files.usage()
    assert usage["bytes"] <= 20_000 and usage["files"] == 5
    big = Path(files.write_bytes(bytes(50_000), "big", ".bin"))  # larger than the ring: kept alone
    assert big.exists() and not any(p.exists() for p in paths)
    files.remove()
    assert not big.parent.exists()


def test_studio_folder_is_removed_at_exit(tmp_path):
    code = ("import os, sys, numpy as np; from demo import files; "
            "assert os.listdir(sys.argv[1]) == [], 'importing must write nothing'; "
            "print(files.jpeg(np.zeros((16, 16, 3), np.uint8))); print(files.directory())")
    env = dict(os.environ, GRADIO_TEMP_DIR=str(tmp_path), PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    jpeg, folder = out.stdout.split()
    assert Path(folder).parent == tmp_path and Path(jpeg).parent == Path(folder)
    assert not Path(folder).exists() and list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- studio
@pytest.fixture(scope="module")
def private_studio(tmp_path_factory, head_path):
    """The studio in-process with its own Gradio cache folder (so bytes written can be counted)."""
    from demo import files

    cache = tmp_path_factory.mktemp("gradio-cache")
    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(cache)
    files.remove()  # the ring starts again under the private cache
    from demo.launch import create_app, launch_kwargs
    from conftest import free_port

    service, demo = create_app(head=head_path, weights=None, device="cpu", warmup=False)
    port = free_port()
    demo.launch(prevent_thread_lock=True, quiet=True, **launch_kwargs("127.0.0.1", port))
    try:
        yield f"http://127.0.0.1:{port}/", service, demo, cache
    finally:
        demo.close()
        files.remove()
        if old is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = old


def _client(url, tmp_path):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=str(tmp_path))


def test_analyses_wait_for_a_free_slot(private_studio, monkeypatch):
    from caphuman.studio import reference

    _, service, _, _ = private_studio
    running, peak, lock = [0], [0], threading.Lock()

    def slow(source, size, target):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return source

    monkeypatch.setattr(reference, "analyze", slow)
    out = []
    threads = [threading.Thread(target=lambda i=i: out.append(service.analyze(i))) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == list(range(6))  # every request waited its turn, none failed
    assert peak[0] == service.analysis_slots == 2


def test_preview_writes_little_and_the_hint_only_when_asked(private_studio, tmp_path):
    url, _, _, cache = private_studio
    c = _client(url, tmp_path / "client")
    c.predict("{}", None, 512, api_name="/preview")
    before = tree_bytes(cache)
    for yaw in (5, 10, 15, 20):
        out = c.predict(json.dumps({"pose": {"yaw": yaw}}), None, 512, api_name="/preview")
        assert out[4] is None
    per_call = (tree_bytes(cache) - before) / 4
    assert per_call <= 200_000, per_call
    assert Image.open(out[0]).format == "JPEG" and Image.open(out[0]).size == (512, 512)
    before = tree_bytes(cache)
    out = c.predict("{}", None, 512, True, api_name="/preview")
    hint = np.load(out[4])
    assert hint.dtype == np.float16 and hint.shape == (9, 512, 512)
    assert tree_bytes(cache) - before < 9 * 512 * 512 * 2 + 300_000  # written once, float16


def test_slider_release_writes_only_the_glb_and_the_preset(private_studio):
    """Slider moves never reach the server (the head is drawn in the browser); a release renders the
    authoritative state: its preview and maps travel inline, only the GLB and the preset are files."""
    import os

    from caphuman.controls.state import HeadState, Pose
    from demo.handlers import Handlers, new_session
    from demo.inline_image import Jpeg

    _, service, demo, cache = private_studio
    preview = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "preview")
    h = Handlers(service)
    for yaw in (0.0, 10.0, 20.0):
        before = {p for p in cache.rglob("*") if p.is_file()}
        out = h.commit(new_session(), HeadState(pose=Pose(yaw=yaw)).to_json())
        glb, preset, images = out[0], out[1], out[2:]
        assert all(isinstance(v, Jpeg) for v in images)
        data = preview.postprocess(images[0])
        assert data.path is None and data.url.startswith("data:image/jpeg;base64,")
        new = {p for p in cache.rglob("*") if p.is_file()} - before
        assert {str(p) for p in new} == {glb, preset} and all(os.path.getsize(p) < 2_000_000 for p in new)


def test_cache_is_cleaned_on_a_short_schedule(private_studio):
    from caphuman.studio import serving

    _, _, demo, _ = private_studio
    assert demo.delete_cache == (serving.CACHE_CLEAN_FREQUENCY_S, serving.CACHE_MAX_AGE_S) == (60, 300)


def test_load_smoke_8_clients_10s(private_studio, tmp_path):
    """8 API clients x 10 s of /preview on loopback: no errors, memory flat, little disk."""
    url, _, _, cache = private_studio
    clients = [_client(url, tmp_path / f"c{k}") for k in range(8)]
    clients[0].predict("{}", None, 512, api_name="/preview")
    rss0, disk0 = rss_mb(), tree_bytes(cache)
    errors, calls, lock = [], [0], threading.Lock()
    deadline = time.perf_counter() + 10.0
    samples = []

    def user(c, k):
        yaw = -50.0 + k
        while time.perf_counter() < deadline:
            try:
                c.predict(json.dumps({"pose": {"yaw": yaw}}), None, 512, api_name="/preview")
                with lock:
                    calls[0] += 1
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(repr(exc)[:200])
            yaw = -yaw * 0.9

    threads = [threading.Thread(target=user, args=(c, k)) for k, c in enumerate(clients)]
    for t in threads:
        t.start()
    while any(t.is_alive() for t in threads):
        samples.append(rss_mb())
        time.sleep(0.5)
    for t in threads:
        t.join()
    rss1 = rss_mb()
    assert errors == []
    assert calls[0] >= 8
    assert rss1 - rss0 < 300, (rss0, rss1)
    half = samples[len(samples) // 2:]
    assert max(half) - min(half) < 100, samples  # flat once warm
    assert (tree_bytes(cache) - disk0) / calls[0] <= 200_000
