"""``python -m caphuman preview``: render the posed head (preview PNG, 9-channel hint, mesh)."""

from __future__ import annotations

import argparse
import sys
import time

from caphuman.cli.head_args import add_head_arguments, list_expressions, state_from_args, state_to_json_file
from caphuman.errors import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_head_arguments(parser)
    parser.add_argument("--reference", metavar="IMG",
                        help="fit the head to this photo and draw it over the photo (photo analysis)")
    parser.add_argument("--size", type=int, default=512, help="output size in pixels (square, 8..2048)")
    parser.add_argument("--out", metavar="PREVIEW.png", help="preview picture (lit head over backdrop)")
    parser.add_argument("--maps", metavar="PREFIX", help="also save PREFIX_normals/_albedo/_shading.png")
    parser.add_argument("--hint", metavar="HINT.npy", help="9-channel hint (9, H, W) float32")
    parser.add_argument("--mesh", metavar="HEAD.glb", help="posed head mesh (.glb or .obj)")
    parser.add_argument("--save-params", metavar="OUT.json", help="write the head state used")
    parser.add_argument("--landmarks", action="store_true", help="draw the 68 landmarks on the preview")
    parser.add_argument("--list-expressions", action="store_true", help="list expression names and exit")


def run(args: argparse.Namespace) -> int:
    if args.list_expressions:
        print(list_expressions())
        return 0
    if not (8 <= args.size <= 2048):
        raise InputError(f"--size must be between 8 and 2048, got {args.size}")
    if not any([args.out, args.hint, args.mesh, args.save_params, args.maps]):
        args.out = "preview.png"
    if args.mesh and not args.mesh.lower().endswith((".glb", ".obj")):
        raise InputError(f"--mesh must end in .glb or .obj, got {args.mesh}")
    t0 = time.perf_counter()
    state = None if args.reference else state_from_args(args)  # bad values fail before any loading
    import numpy as np

    from caphuman.head.resolve import load_head
    from caphuman.preview import HeadPreviewPipeline, save_mesh
    from caphuman.render.preview_image import encode_png

    head = load_head(args.head)
    print(f"head: {head.description}", file=sys.stderr)
    pipeline = HeadPreviewPipeline(head.data)
    base = None
    backdrop = None
    if args.reference:
        base, backdrop = _fit_reference(args, pipeline)
    if state is None:
        state = state_from_args(args, base=base)
    result = pipeline.render(state, args.size, backdrop=backdrop, draw_landmarks=args.landmarks)
    if args.out:
        _write(args.out, encode_png(result.preview))
    if args.maps:
        for name, img in result.maps.items():
            _write(f"{args.maps}_{name}.png", encode_png(img))
    if args.hint:
        try:
            np.save(args.hint, result.hint)
        except OSError as exc:
            raise InputError(f"cannot write {args.hint}: {exc.strerror}") from None
    if args.mesh:
        try:
            save_mesh(pipeline, state, args.mesh)
        except OSError as exc:
            raise InputError(f"cannot write {args.mesh}: {exc.strerror}") from None
    if args.save_params:
        state_to_json_file(state, args.save_params)
    written = [p for p in (args.out, args.hint, args.mesh, args.save_params) if p]
    print(f"wrote {', '.join(written) or 'nothing'} in {time.perf_counter() - t0:.2f} s", file=sys.stderr)
    return 0


def _fit_reference(args: argparse.Namespace, pipeline):
    """Photo analysis hook: (fitted HeadState, frame image) for ``--reference``."""
    try:
        from caphuman.face.analysis import analyze_for_preview
    except ImportError:
        raise InputError("--reference needs the photo-analysis module (caphuman.face), not installed") from None
    return analyze_for_preview(args.reference, pipeline, args.size)


def _write(path: str, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
    except OSError as exc:
        raise InputError(f"cannot write {path}: {exc.strerror}") from None
