"""``python -m caphuman doctor``: which model files are present or missing, and why each matters.

Always exits 0; ``--verify`` also checks MD5 checksums where known (reads every byte).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoints", help="checkpoints folder (default: $CAPHUMAN_CHECKPOINTS or ./checkpoints)")
    parser.add_argument("--verify", action="store_true", help="compare MD5 checksums where known (slow)")


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""


def report(root=None, verify: bool = False) -> str:
    """The doctor's text (see module docstring)."""
    from caphuman.weights.registry import REGISTRY, checkpoints_root, file_status, where_to_get

    base = root if root is not None else checkpoints_root()
    lines = [f"checkpoints folder: {base}", ""]
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
    try:
        import cv2  # noqa: F401

        lines.append("face detection fallback (OpenCV Haar cascades): available")
    except Exception as exc:  # pragma: no cover - depends on the install
        lines.append(f"face detection fallback (OpenCV) NOT available: {exc}")
    from caphuman.face.detection import insightface_model_dir

    d = insightface_model_dir(root)
    lines.append(f"face detector that `analyze` will use: {'insightface (' + str(d) + ')' if d else 'opencv (fallback)'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    print(report(args.checkpoints, verify=args.verify))
    return 0
