"""``python -m caphuman doctor``: can I generate now? Then which model files are present or
missing, and why each matters.

The first line answers the question (``ready to generate: yes / no — missing: … — run: …``).
Always exits 0; ``--verify`` also checks published checksums and the SHA-256 recorded when a
file was downloaded (reads every byte).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", help="checkpoints folder (default: $CAPHUMAN_CHECKPOINTS or ./checkpoints)")
    parser.add_argument("--weights", help="converted CapHuman folder or Hub repo id to check (default: as `generate`)")
    parser.add_argument("--verify", action="store_true",
                        help="compare checksums (published, or recorded at download) of every file (slow)")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def report(root=None, verify: bool = False, weights=None) -> str:
    """The doctor's text (see module docstring)."""
    from caphuman.weights.readiness import generation_readiness
    from caphuman.weights.registry import REGISTRY, checkpoints_root, file_status, where_to_get

    base = root if root is not None else checkpoints_root()
    lines = [generation_readiness(weights, root).line(), "", f"checkpoints folder: {base}", ""]
    missing = []
    for key, w in REGISTRY.items():
        st = file_status(key, root, verify=verify)
        mark = "ok     " if st.ok else f"{st.state.upper():7s}"
        extra = f" ({_size(st.size_bytes)})" if st.ok else (f" ({st.detail})" if st.detail else "")
        lines.append(f"[{mark}] {key:16s} {w.path}{extra}")
        if not st.ok:
            missing.append((key, w))
    lines.append("")
    if missing:
        lines.append("What the missing pieces mean:")
        for key, w in missing:
            lines.append(f"  {key} ({w.description}): needed for {w.needed_for}.")
            lines.append(f"      get it: {where_to_get(key)}")
            lines.append(f"      licence: {w.licence}")
    else:
        lines.append("All model files are present.")
    lines.append("")
    from caphuman.head.flame_files import FLAME_HOWTO, find_flame_files, flame_release

    flame = find_flame_files(Path(base) / "flame") if (Path(base) / "flame").is_dir() else {"model": None}
    if flame["model"] is not None:
        release, licence = flame_release(flame["model"])
        lines.append(f"FLAME head: {release} ({licence}) at {flame['model']}"
                     + ("" if flame["landmarks"] else " -- needs `python -m caphuman download deca-data`"))
    else:
        lines.append("FLAME head: not installed (the built-in head is used). " + FLAME_HOWTO)
    lines.append("")
    from caphuman.face import mediapipe_detector
    from caphuman.face.detection import insightface_model_dir

    have_mp = mediapipe_detector.available()
    lines.append("dense face landmarks (MediaPipe face mesh, 478 points, offline, Apache-2.0): "
                 + ("available" if have_mp else "NOT available (pip install -r requirements.txt)"))
    try:
        import cv2  # noqa: F401

        lines.append("last-resort face detection (OpenCV Haar cascades): available")
    except Exception as exc:  # pragma: no cover - depends on the install
        lines.append(f"last-resort face detection (OpenCV) NOT available: {exc}")
    d = insightface_model_dir(root)
    if d:
        used = "insightface + MediaPipe mesh (ArcFace identity check)" if have_mp else "insightface (68 points)"
    else:
        used = "MediaPipe (detector + 478-point mesh)" if have_mp else "opencv (box and eyes only: no pose from photos)"
    lines.append(f"face detector and landmarker that `analyze` will use: {used}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(report(args.checkpoints, verify=args.verify, weights=args.weights))
    return 0
