"""Memory and disk bounds (issue 10): prints one JSON object.

* ``cli``: peak RSS of ``python -m caphuman analyze --reference X`` for the worst images the
  intake accepts (an RGB PNG at the decode budget, a 249.6 Mpx JPEG, a 249.6 Mpx greyscale PNG)
  and the 249.6 Mpx RGB PNG it refuses (each run in a subprocess; ``ru_maxrss``);
* ``studio``: ``python app.py`` in a subprocess: RSS at baseline, the peak while 4 worst-case
  uploads are analysed at once (``/analyze``), right after, and after settling;
* ``disk``: bytes the studio writes per ``/preview`` call (512^2) without the hint flag (with and
  without a backdrop) and with it (everything under its private ``GRADIO_TEMP_DIR``);
* ``load``: N concurrent API ``/preview`` users for T seconds on loopback: calls, errors, p50/p95
  latency, RSS before/after, disk bytes per call.

    python benchmarks/resources.py [--users 16] [--seconds 60] [--skip cli,studio,disk,load]

The test images are drawn at run time (a flat cartoon face on black, compressible: the largest
file is a few MB) in a temporary folder that is deleted afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1024 * 1024

MAKE_IMAGE = r"""
import sys, numpy as np, cv2
w, h, out, mark = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
grey = out.endswith("_grey.png")
# np.zeros pages that are never written cost no memory: only the face region is touched.
img = np.zeros((h, w) if grey else (h, w, 3), np.uint8)
cx, cy, fw = w // 2, h // 2, min(w, h) // 4
skin, dark, lips = ((180,), (40,), (90,)) if grey else ((140, 170, 215), (40, 40, 40), (60, 60, 150))
cv2.ellipse(img, (cx, cy), (fw, int(fw * 1.3)), 0, 0, 360, skin, -1)
for dx in (-fw * 2 // 5, fw * 2 // 5):
    cv2.circle(img, (cx + dx, cy - fw // 3), fw // 10, dark, -1)
cv2.ellipse(img, (cx, cy + fw // 2), (fw // 3, fw // 10), 0, 0, 180, lips, max(1, fw // 30))
cv2.circle(img, (10 + 40 * mark, 10), 8, skin, -1)  # makes each copy's pixels distinct
params = [cv2.IMWRITE_PNG_COMPRESSION, 9] if out.endswith(".png") else [cv2.IMWRITE_JPEG_QUALITY, 90]
assert cv2.imwrite(out, img, params)
"""


def make_image(path: Path, w: int, h: int, mark: int = 0) -> Path:
    subprocess.run([sys.executable, "-c", MAKE_IMAGE, str(w), str(h), str(path), str(mark)], check=True)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def dir_bytes(*roots: Path) -> int:
    seen, total = set(), 0
    for root in roots:
        for dirpath, _, names in os.walk(root):
            for n in names:
                p = os.path.join(dirpath, n)
                if p in seen:
                    continue
                seen.add(p)
                try:
                    total += os.lstat(p).st_size
                except OSError:
                    pass
    return total


def percentile(values, q):
    v = sorted(values)
    if not v:
        return None
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


# ----------------------------------------------------------------------------- (a) CLI
def bench_cli(work: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from caphuman.face.intake import WORKING_PIXELS, decode_budget

    edge = int((decode_budget() // 4) ** 0.5)  # RGB is held with 4 bytes per pixel
    cases = [("rgb_png_at_budget", make_image(work / "edge.png", edge, edge)),
             ("jpeg_249.6mpx", make_image(work / "worst.jpg", 15800, 15800)),
             ("grey_png_249.6mpx", make_image(work / "worst_grey.png", 15800, 15800)),
             ("rgb_png_249.6mpx_refused", make_image(work / "worst.png", 15800, 15800))]
    rows = []
    for name, path in cases:
        code = ("import resource, runpy, sys; sys.argv = ['caphuman', 'analyze', '--reference', sys.argv[1]]\n"
                "try:\n    runpy.run_module('caphuman', run_name='__main__')\n"
                "except SystemExit as e:\n    rc = e.code\nelse:\n    rc = 0\n"
                "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, rc, file=sys.stderr)")
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wall = time.perf_counter() - t
        peak_line = [ln for ln in p.stderr.splitlines() if ln.startswith("PEAK ")]
        peak_kb, rc = (int(peak_line[-1].split()[1]), peak_line[-1].split()[2]) if peak_line else (None, p.returncode)
        errors = [ln for ln in p.stderr.splitlines() if ln.startswith("error:")]
        from PIL import Image

        Image.MAX_IMAGE_PIXELS = None  # only the header is read here, for the report
        with Image.open(path) as im:
            size, mode = im.size, im.mode
        rows.append({"case": name, "size": list(size), "mode": mode, "file_kb": path.stat().st_size // 1024,
                     "exit": rc, "peak_rss_mb": None if peak_kb is None else round(peak_kb / 1024, 1),
                     "seconds": round(wall, 1), "message": errors[0] if errors else None})
    small = make_image(work / "small.png", 800, 1000)
    p = subprocess.run([sys.executable, "-c", "import resource, runpy, sys; sys.argv=['caphuman','analyze','--reference',sys.argv[1]]\n"
                        "try:\n    runpy.run_module('caphuman', run_name='__main__')\nexcept SystemExit:\n    pass\n"
                        "print('PEAK', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)", str(small)],
                       cwd=ROOT, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    base = [int(ln.split()[1]) for ln in p.stderr.splitlines() if ln.startswith("PEAK ")]
    return {"decode_budget_mb": decode_budget() // MB, "working_pixels": WORKING_PIXELS,
            "baseline_small_photo_peak_rss_mb": round(base[0] / 1024, 1) if base else None,
            "limit_peak_rss_mb": 1536, "cases": rows}


# ----------------------------------------------------------------------------- studio process
class Studio:
    def __init__(self, work: Path):
        self.cache = work / "gradio-cache"
        self.cache.mkdir()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", GRADIO_TEMP_DIR=str(self.cache),
                   PYTHONPATH=str(ROOT))
        self.log = open(work / "studio.log", "w")
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(self.port), "--head", "builtin",
                                      "--no-warmup"], cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        import urllib.request

        deadline = time.time() + 180
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"studio exited: see {work / 'studio.log'}")
            try:
                with urllib.request.urlopen(self.url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise RuntimeError("studio did not start within 180 s")

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def disk(self) -> int:
        return dir_bytes(self.cache)

    def client(self):
        from gradio_client import Client

        return Client(self.url, verbose=False, download_files=False)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()
        left = [p.name for p in self.cache.iterdir() if p.name.startswith("caphuman-studio-")]
        return {"studio_folders_left_after_exit": left}


def _state(yaw: float) -> str:
    return json.dumps({"pose": {"yaw": yaw}})


def bench_studio(studio: Studio, work: Path, settle_s: float) -> dict:
    from gradio_client import handle_file

    c = studio.client()
    small = make_image(work / "face.jpg", 640, 800)
    c.predict(handle_file(str(small)), api_name="/analyze")  # lazy imports, detector loaded
    c.predict(_state(10), None, 512, api_name="/preview")
    time.sleep(1.0)
    baseline = studio.rss()
    sys.path.insert(0, str(ROOT))
    from caphuman.face.intake import decode_budget

    edge = int((decode_budget() // 4) ** 0.5)
    uploads = [make_image(work / f"upload{i}.png", edge, edge, mark=i) for i in range(4)]
    peak, stop = [baseline], threading.Event()

    def sample():
        while not stop.is_set():
            peak.append(studio.rss())
            time.sleep(0.05)

    results, errors = [], []

    def one(path):
        try:
            t = time.perf_counter()
            studio.client().predict(handle_file(str(path)), api_name="/analyze")
            results.append(time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001
            errors.append(f"{exc.__class__.__name__}: {str(exc)[:200]}")

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(p,)) for p in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    after = studio.rss()
    time.sleep(settle_s)
    settled = studio.rss()
    return {"upload": f"4 x {edge}x{edge} RGB PNG ({uploads[0].stat().st_size // 1024} KB each, distinct pixels)",
            "rss_baseline_mb": baseline, "rss_peak_during_mb": max(peak), "rss_right_after_mb": after,
            f"rss_after_{settle_s:g}s_mb": settled, "growth_after_settle_mb": round(settled - baseline, 1),
            "limit_growth_mb": 200, "analyses_ok": len(results), "errors": errors,
            "wall_s": round(wall, 1), "per_upload_s": [round(r, 1) for r in sorted(results)]}


def bench_disk(studio: Studio, work: Path, calls: int = 10) -> dict:
    from gradio_client import handle_file

    c = studio.client()
    frame = make_image(work / "frame.jpg", 512, 512)
    out = {}
    for label, args in (("no_hint", lambda i: (_state(i), None, 512)),
                        ("no_hint_with_backdrop", lambda i: (_state(i), handle_file(str(frame)), 512)),
                        ("with_hint", lambda i: (_state(i), None, 512, True))):
        c.predict(*args(0.5), api_name="/preview")
        before = studio.disk()
        for i in range(calls):
            res = c.predict(*args(i + 1.25), api_name="/preview")
        per_call = (studio.disk() - before) / calls
        out[label] = {"bytes_per_call": int(per_call), "hint": None if res[4] is None else res[4].get("orig_name")}
    out["limit_bytes_per_call_no_hint"] = 200_000
    out["calls_each"] = calls
    out["note"] = ("everything under the studio's GRADIO_TEMP_DIR (Gradio's cache and the studio's ring); "
                   "the backdrop case includes Gradio storing the uploaded backdrop")
    return out


def bench_load(studio: Studio, users: int, seconds: float) -> dict:
    clients = [studio.client() for _ in range(users)]
    clients[0].predict(_state(1), None, 512, api_name="/preview")
    time.sleep(1.0)
    rss_before, disk_before = studio.rss(), studio.disk()
    lat, errors, lock = [], [], threading.Lock()
    rss_peak, stop = [rss_before], threading.Event()
    deadline = time.perf_counter() + seconds

    def user(c, k):
        rnd = random.Random(k)
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                c.predict(_state(rnd.uniform(-60, 60)), None, 512, api_name="/preview")
                with lock:
                    lat.append(time.perf_counter() - t)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(f"{exc.__class__.__name__}: {str(exc)[:200]}")

    timeline = []

    def sample():
        k = 0
        while not stop.is_set():
            rss_peak.append(studio.rss())
            if k % 20 == 0:  # every 5 s
                timeline.append(rss_peak[-1])
            k += 1
            time.sleep(0.25)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    threads = [threading.Thread(target=user, args=(c, k)) for k, c in enumerate(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    stop.set()
    sampler.join()
    rss_after = studio.rss()
    n = len(lat)
    return {"users": users, "seconds": seconds, "calls": n, "errors": len(errors), "error_samples": errors[:3],
            "calls_per_s": round(n / wall, 2),
            "latency_p50_ms": None if not n else round(statistics.median(lat) * 1000, 1),
            "latency_p95_ms": None if not n else round(percentile(lat, 0.95) * 1000, 1),
            "rss_before_mb": rss_before, "rss_peak_mb": max(rss_peak), "rss_after_mb": rss_after,
            "rss_every_5s_mb": timeline,
            "disk_bytes_per_call": None if not n else int((studio.disk() - disk_before) / n)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--settle", type=float, default=5.0, help="seconds to wait before the settled RSS reading")
    ap.add_argument("--skip", default="", help="comma-separated: cli,studio,disk,load")
    args = ap.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    load1 = os.getloadavg()[0]
    out = {"benchmark": "resources (issue 10: bounded memory and disk)",
           "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
           "python": platform.python_version(), "loadavg_1min_at_start": round(load1, 2)}
    work = Path(tempfile.mkdtemp(prefix="caphuman-resources-"))
    try:
        if "cli" not in skip:
            out["cli"] = bench_cli(work)
        if skip >= {"studio", "disk", "load"}:
            return _print(out)
        studio = Studio(work)
        try:
            out["studio_start_rss_mb"] = studio.rss()
            if "studio" not in skip:
                out["studio"] = bench_studio(studio, work, args.settle)
            if "disk" not in skip:
                out["disk"] = bench_disk(studio, work)
            if "load" not in skip:
                out["load"] = bench_load(studio, args.users, args.seconds)
            out["gradio_cache_bytes_at_end"] = studio.disk()
        finally:
            out.update(studio.close())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["loadavg_1min_at_end"] = round(os.getloadavg()[0], 2)
    out["benchmark_process_peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    return _print(out)


def _print(out) -> int:
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
