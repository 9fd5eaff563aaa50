"""Preview-path latency: head forward, rasterise + 9-channel hint, PNG encode (CPU).

    python benchmarks/preview.py --json [--size 512] [--repeats 50] [--head auto|builtin|PATH]

Prints one JSON object: forward_ms_median, render_ms_median (rasterise + hint), compose_ms_median
(preview picture), encode_ms_median (preview PNG), total_ms_median (one full slider update),
vertices, faces, plus the machine. Target on the 2-core CI machine: total <= 20 ms at 512^2.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--head", default="auto")
    args = ap.parse_args()

    import numpy as np
    import torch

    from caphuman.controls import HeadState
    from caphuman.head.resolve import load_head
    from caphuman.preview import HeadPreviewPipeline
    from caphuman.render.maps import render_hint
    from caphuman.render.preview_image import compose_preview, encode_png

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    head = load_head(args.head)
    pipe = HeadPreviewPipeline(head.data)
    rng = np.random.default_rng(0)
    times = {k: [] for k in ("forward", "render", "compose", "encode", "total")}
    for i in range(args.repeats + 3):  # first iterations warm up numba/torch
        s = HeadState()
        s.pose.yaw, s.pose.pitch, s.pose.roll = rng.uniform(-40, 40, 3)
        s.expression_controls = {"smile": float(rng.uniform(0, 1)), "mouth_open": float(rng.uniform(0, 0.5))}
        s.lighting.azimuth = float(rng.uniform(-90, 90))
        t0 = time.perf_counter()
        s = s.validated()
        posed = pipe.pose(s)
        t1 = time.perf_counter()
        maps = render_hint(posed.vertices, posed.ndc, pipe.data.f, pipe.data.ft, pipe.data.vt,
                           pipe.albedo_map(s.albedo), pipe.light_coefficients(s), args.size, args.size)
        t2 = time.perf_counter()
        img = compose_preview(maps.hint[6:9], maps.mask)
        t3 = time.perf_counter()
        encode_png(img)
        t4 = time.perf_counter()
        if i >= 3:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t4 - t0)):
                times[k].append(v * 1000.0)
    med = {f"{k}_ms_median": round(statistics.median(v), 3) for k, v in times.items()}
    result = {
        **med,
        "total_ms_p95": round(float(np.percentile(times["total"], 95)), 3),
        "size": args.size, "repeats": args.repeats,
        "vertices": head.data.num_vertices, "faces": int(head.data.f.shape[0]),
        "head": head.kind, "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.processor() or 'cpu'}",
        "target_total_ms": 20.0,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
