"""``python -m caphuman analyze``: detect the face in a photo, fit the head, print/save JSON.

Contract: ``--reference IMG [--pose-reference IMG --modes position,pose,...] [--json OUT.json]
[--crops DIR]``. JSON: detector backend, every face (box, score, keypoints, landmarks if any), the
chosen face, warnings and the fitted head state (with the pose photo's fields transferred).
"""

from __future__ import annotations

import argparse
import json
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reference", required=True, metavar="IMG", help="reference face photo")
    parser.add_argument("--pose-reference", metavar="IMG", help="photo whose position/pose/... are transferred")
    parser.add_argument("--modes", default="position,pose",
                        help="what to take from --pose-reference: position,pose,expression,lighting or all")
    parser.add_argument("--json", metavar="OUT.json", help="write the analysis here (default: stdout)")
    parser.add_argument("--crops", metavar="DIR", help="save frame.png (and face_only.png) here")
    parser.add_argument("--size", type=int, default=512, help="output frame size in pixels (64..2048)")
    parser.add_argument("--head", default="auto", help="head model to fit: auto | builtin | PATH")
    parser.add_argument("--detector", default="auto", choices=("auto", "mediapipe", "insightface", "opencv"),
                        help="face detector + landmarker (auto: insightface+mediapipe when the buffalo_l pack is "
                             "present, else mediapipe, else opencv)")
    parser.add_argument("--no-encoders", action="store_true", help="skip DECA/parser/FaceNet/CLIP")


def _target(spec: str, notes: list[str]):
    from caphuman.errors import MissingWeightsError
    from caphuman.face.analysis import FitTarget
    from caphuman.head.resolve import load_head

    try:
        head = load_head(spec)
    except MissingWeightsError as exc:
        notes.append(f"no head model ({exc}); the head state is not fitted")
        return None
    return FitTarget.from_model_data(head.data, "flame" if head.kind == "flame" else head.kind)


def run(args: argparse.Namespace) -> int:
    from caphuman.errors import InputError
    from caphuman.face.analysis import Encoders, analyze_reference, load_encoders
    from caphuman.face.transfer import parse_modes, transfer

    if not (64 <= args.size <= 2048):
        raise InputError(f"--size must be between 64 and 2048, got {args.size}")
    modes = parse_modes(args.modes) if args.pose_reference else []
    notes: list[str] = []
    target = _target(args.head, notes)
    enc = Encoders() if args.no_encoders else load_encoders(clip=True)
    ref = analyze_reference(args.reference, args.size, target=target, encoders=enc, backend=args.detector)
    out = ref.to_dict()
    out["warnings"] = notes + out["warnings"]
    if args.pose_reference:
        pose = analyze_reference(args.pose_reference, args.size, target=target, encoders=Encoders(),
                                 backend=args.detector, what="the pose photo")
        out["pose_reference"] = {k: v for k, v in pose.to_dict().items() if k != "head_state"}
        out["modes"] = modes
        out["reference_head_state"] = out["head_state"]
        out["head_state"] = transfer(ref.state, pose.state, modes).to_dict()
    if args.crops:
        from pathlib import Path

        from PIL import Image

        d = Path(args.crops)
        try:
            d.mkdir(parents=True, exist_ok=True)
            Image.fromarray(ref.frame).save(d / "frame.png")
            if ref.face_only is not None:
                Image.fromarray(ref.face_only).save(d / "face_only.png")
        except OSError as exc:
            raise InputError(f"cannot write crops to {d}: {exc.strerror}") from None
    text = json.dumps(out, indent=2)
    if args.json:
        try:
            with open(args.json, "w") as fh:
                fh.write(text + "\n")
        except OSError as exc:
            raise InputError(f"cannot write {args.json}: {exc.strerror}") from None
        p = out["head_state"]["pose"]
        print(f"detector: {out['detector']} · landmarks: {out['landmarker']} · fit: {out['fit']} · "
              f"yaw {p['yaw']:.1f} pitch {p['pitch']:.1f} roll {p['roll']:.1f}", file=sys.stderr)
        for w in out["warnings"]:
            print(f"note: {w}", file=sys.stderr)
    else:
        print(text)
    return 0
