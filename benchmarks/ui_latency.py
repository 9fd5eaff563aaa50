"""Studio UI latency in headless Chromium (software WebGL: CPU-rendered figures are an upper bound).

* key press -> new head frame on screen (ms): keydown on the yaw slider until the page has drawn
  a frame with the new yaw and the next animation frame has started (it is on screen);
* per-frame head update in JS (ms): expression blend + skinning + normals + buffer upload,
  excluding the draw (``CH.stats.updateMs``);
* sustained fps while dragging the yaw slider (frames drawn / seconds);
* server requests per slider key press (target 0) and per release (1, the commit);
* release -> authoritative hint ready on the server (ms): the commit's server work (hint + preview
  + GLB), timed in-process on the same head, and release -> GLB fetched by the page (browser);
* app start -> first page (s) and -> first head drawn in the page (s).

    python benchmarks/ui_latency.py [--moves 30] [--head builtin] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from browser import chromium_page  # noqa: E402

MEASURE_KEY = """
() => new Promise((resolve, reject) => {
  const slider = document.querySelector('#slider-pose-yaw input[type=range]');
  let t0 = null;
  const timer = setTimeout(() => reject(new Error('no new head frame within 5 s')), 5000);
  slider.addEventListener('keydown', () => {
    t0 = performance.now();
    const f0 = CH.stats.frames, y0 = CH.stats.lastYaw;
    const poll = () => {
      if (CH.stats.frames > f0 && CH.stats.lastYaw !== y0) {
        requestAnimationFrame(() => { clearTimeout(timer); resolve(performance.now() - t0); });
      } else requestAnimationFrame(poll);
    };
    poll();
  }, {once: true, capture: true});
})
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    v = sorted(values)
    k = (len(v) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--moves", type=int, default=30, help="slider moves to time (>= 20)")
    p.add_argument("--head", default="auto", help="head passed to app.py")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    if args.moves < 20:
        p.error("--moves must be at least 20")

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    t_start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--head", args.head,
                             "--no-warmup"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit("app.py exited: " + proc.stderr.read().decode()[-2000:])
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.05)
        first_page_s = time.perf_counter() - t_start
        with chromium_page() as page:
            joins, glbs = [], []
            page.on("request", lambda r: joins.append(time.perf_counter()) if "/queue/join" in r.url else None)
            page.on("requestfinished",
                    lambda r: glbs.append(time.perf_counter()) if r.url.endswith(".glb") else None)
            page.goto(url)
            page.wait_for_function("() => window.CH && CH.ready()", timeout=60000)
            first_head_s = time.perf_counter() - t_start
            time.sleep(1.5)
            slider = page.locator("#slider-pose-yaw input[type=range]")
            slider.focus()
            page.evaluate("() => { CH.stats.updateMs.length = 0; }")
            times, n0 = [], len(joins)
            for i in range(args.moves + 3):  # 3 warm-up moves
                key = "ArrowRight" if (i // 10) % 2 == 0 else "ArrowLeft"
                page.evaluate(f"() => {{ window.__m = ({MEASURE_KEY})(); }}")
                page.keyboard.press(key)
                ms = page.evaluate("() => window.__m")
                if i >= 3:
                    times.append(ms)
            presses = args.moves + 3
            requests_per_key = (len(joins) - n0) / presses
            update_ms = page.evaluate("() => CH.stats.updateMs.slice()")
            time.sleep(1.5)  # keys stopped: one commit
            # drag: sustained fps, then release -> GLB on the page
            box = slider.bounding_box()
            y = box["y"] + box["height"] / 2
            page.mouse.move(box["x"] + box["width"] * 0.3, y)
            page.mouse.down()
            f0, t0 = page.evaluate("() => [CH.stats.frames, performance.now()]")
            for k in range(60):
                page.mouse.move(box["x"] + box["width"] * (0.3 + 0.4 * (k % 30) / 30), y)
            f1, t1 = page.evaluate("() => [CH.stats.frames, performance.now()]")
            n1, g1 = len(joins), len(glbs)
            t_release = time.perf_counter()
            page.mouse.up()
            deadline = time.time() + 20
            while len(glbs) == g1 and time.time() < deadline:
                page.wait_for_timeout(5)
            release_to_glb_ms = (glbs[-1] - t_release) * 1000 if len(glbs) > g1 else None
            page.wait_for_timeout(800)
            requests_per_release = len(joins) - n1
    finally:
        proc.terminate()
        proc.wait(10)
    server_ms = server_commit_ms(args.head)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} (CPU only, SwiftShader WebGL)",
        "head": args.head,
        "moves": len(times),
        "keypress_to_head_frame_ms": {"median": round(statistics.median(times), 1),
                                      "p95": round(percentile(times, 0.95), 1), "max": round(max(times), 1)},
        "js_head_update_ms": {"median": round(statistics.median(update_ms), 2),
                              "p95": round(percentile(update_ms, 0.95), 2)},
        "drag_fps": round((f1 - f0) / max((t1 - t0) / 1000, 1e-6), 1),
        "server_requests_per_key_press": round(requests_per_key, 3),
        "server_requests_per_release": requests_per_release,
        "release_to_hint_ms_server": server_ms,
        "release_to_glb_on_page_ms": None if release_to_glb_ms is None else round(release_to_glb_ms, 1),
        "app_start_to_first_page_s": round(first_page_s, 2),
        "app_start_to_first_head_s": round(first_head_s, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def server_commit_ms(head: str, repeats: int = 20) -> dict:
    """The commit's server work for one state (hint + preview over the photo + GLB), in-process."""
    import numpy as np

    from caphuman.controls.state import HeadState
    from caphuman.studio.service import StudioService

    service = StudioService(head=head)
    frame = np.full((512, 512, 3), 120, np.uint8)
    state = HeadState()
    service.preview(state, frame)
    out = []
    for i in range(repeats):
        state.pose.yaw = float(i)
        t = time.perf_counter()
        service.preview(state, frame)
        service.glb(state)
        out.append((time.perf_counter() - t) * 1000)
    return {"median": round(statistics.median(out), 1), "p95": round(percentile(out, 0.95), 1)}


if __name__ == "__main__":
    sys.exit(main())
