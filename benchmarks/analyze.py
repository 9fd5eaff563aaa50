"""Benchmark: reference analysis on CPU, fallback path (OpenCV detector + landmark fit).

``python benchmarks/analyze.py [--json] [--repeat N]``: cold analysis time (no cache) per example
photo, and the cached lookup time (what a slider move costs).
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

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()

    import torch

    from caphuman.face.analysis import AnalysisCache, FitTarget, analyze_reference
    from caphuman.face.detection import get_detector
    from caphuman.errors import MissingWeightsError
    from caphuman.head.resolve import load_head

    try:
        head = load_head("auto")
        target, head_name = FitTarget.from_model_data(head.data, head.kind), head.description
    except MissingWeightsError:
        from caphuman.testing.synthetic_head import build_synthetic_head

        target, head_name = FitTarget.from_model_data(build_synthetic_head(), "builtin"), "synthetic test head"
    detector, _ = get_detector("opencv")
    rows = []
    for img in sorted((ROOT / "assets" / "examples").glob("*.jpg")):
        cold = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            r = analyze_reference(img, args.size, target=target, detector=detector, cache=None)
            cold.append(time.perf_counter() - t)
        cache = AnalysisCache()
        analyze_reference(img, args.size, target=target, detector=detector, cache=cache)
        t = time.perf_counter()
        analyze_reference(img, args.size, target=target, detector=detector, cache=cache)
        warm = time.perf_counter() - t
        rows.append({"image": img.name, "shape": list(r.image.shape), "fit": r.fit,
                     "cold_median_s": round(statistics.median(cold), 4), "cold_min_s": round(min(cold), 4),
                     "cached_s": round(warm, 5)})
    info = {"benchmark": "analyze (fallback path: opencv detector + landmark fit, no encoders)",
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "head": head_name, "size": args.size,
            "repeat": args.repeat, "results": rows}
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for r in rows:
            print(f"{r['image']:20s} fit={r['fit']:10s} cold {r['cold_median_s'] * 1000:7.1f} ms (median of "
                  f"{args.repeat}), cached {r['cached_s'] * 1000:.2f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
