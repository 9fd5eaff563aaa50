"""Studio UI latency in headless Chromium.

* slider key-press -> new preview pixels on screen (ms): a keydown on the yaw slider until the
  preview <img> has a new src that has finished loading; one move at a time, >= 20 moves, 512^2;
* app start -> first served page (s): ``python app.py`` spawned until ``GET /`` answers 200, and
  until the page shows its first preview in Chromium.

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

from browser import chromium_page, wait_preview_change  # noqa: E402

MEASURE_MOVE = """
(key) => new Promise((resolve, reject) => {
  const img = document.querySelector('#preview img');
  const old = img.src;
  const slider = document.querySelector('#slider-pose-yaw input[type=range]');
  let t0 = null;
  const timer = setTimeout(() => reject(new Error('no new preview within 10 s')), 10000);
  const check = () => {
    const cur = document.querySelector('#preview img');
    if (cur && cur.src !== old && cur.complete && cur.naturalWidth > 0) {
      clearTimeout(timer); obs.disconnect(); resolve(performance.now() - t0);
    }
  };
  const obs = new MutationObserver(() => { check(); const cur = document.querySelector('#preview img');
    if (cur) cur.addEventListener('load', check, {once: true}); });
  obs.observe(document.querySelector('#preview'), {subtree: true, childList: true, attributes: true,
                                                  attributeFilter: ['src']});
  slider.addEventListener('keydown', () => { t0 = performance.now(); }, {once: true, capture: true});
  window.__pressed = true;
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
            page.goto(url)
            src = wait_preview_change(page, "", 60000)
            first_preview_s = time.perf_counter() - t_start
            slider = page.locator("#slider-pose-yaw input[type=range]")
            slider.focus()
            times = []
            for i in range(args.moves + 3):  # 3 warm-up moves
                key = "ArrowRight" if (i // 10) % 2 == 0 else "ArrowLeft"
                pending = page.evaluate_handle(f"() => {{ window.__m = ({MEASURE_MOVE})('{key}'); return 1; }}")
                pending.dispose()
                page.keyboard.press(key)
                ms = page.evaluate("() => window.__m")
                if i >= 3:
                    times.append(ms)
            size = page.evaluate("() => document.querySelector('#preview img').naturalWidth")
    finally:
        proc.terminate()
        proc.wait(10)
    result = {
        "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.system()} (CPU only)",
        "head": args.head,
        "preview_px": size,
        "moves": len(times),
        "keypress_to_pixels_ms": {"median": round(statistics.median(times), 1), "p95": round(percentile(times, 0.95), 1),
                                  "min": round(min(times), 1), "max": round(max(times), 1)},
        "app_start_to_first_page_s": round(first_page_s, 2),
        "app_start_to_first_preview_s": round(first_preview_s, 2),
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    del src
    return 0


if __name__ == "__main__":
    sys.exit(main())
