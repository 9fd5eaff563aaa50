"""``python -m caphuman sweep``: a contact sheet -- one person, prompt and seed across a sweep of a head control.

    python -m caphuman sweep --reference photo.jpg --prompt "a photo of a person" \\
        --sweep pose.yaw=-60:60:7 [--sweep pose.pitch=-20:20:3] --seed 1 --out DIR

Writes DIR/NNN_<values>.png + .json per cell, DIR/contact_sheet.png (labelled grid: the first --sweep
across, the second down) and DIR/manifest.jsonl. It is a one-job batch (:mod:`caphuman.cli.batch`):
the same head flags as ``generate`` set the head the sweep starts from, and an interrupted sweep
resumes when the command is run again.
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from caphuman.cli.head_args import _parse_expression, add_head_arguments, add_reference_arguments

#: generate's head flags -> dotted head-state paths
FLAG_PATHS = {"yaw": "pose.yaw", "pitch": "pose.pitch", "roll": "pose.roll", "jaw": "pose.jaw",
              "light_azimuth": "lighting.azimuth", "light_elevation": "lighting.elevation",
              "light_intensity": "lighting.intensity", "ambient": "lighting.ambient", "scale": "placement.scale",
              "shift_x": "placement.shift_x", "shift_y": "placement.shift_y"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caphuman.cli.batch import add_run_arguments

    parser.add_argument("--sweep", action="append", required=True, metavar="CONTROL=FROM:TO:STEPS",
                        help="a head control and its range, e.g. pose.yaw=-60:60:7, smile=0:1:5, "
                             "lighting.azimuth=-90:90:5, or CONTROL=V1,V2,...; give it twice for a grid")
    add_reference_arguments(parser, required=True)
    parser.add_argument("--prompt", required=True, help="text prompt")
    parser.add_argument("--negative-prompt", default="", help="negative prompt (default: empty)")
    add_head_arguments(parser)
    parser.add_argument("--seed", type=int, default=12345, help="one seed for every cell; -1 draws one (default 12345)")
    add_sampling_arguments(parser)
    parser.add_argument("--out", required=True, help="output folder")
    add_run_arguments(parser, head=False)


def add_sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """Sampler, size and LoRA flags of a batch-job run (``sweep``, ``evaluate``)."""
    parser.add_argument("--preset", choices=("original", "fast"), default="original",
                        help="original: DDIM, 20 steps, guidance 7 (default); fast: LCM-LoRA, 4 steps, guidance 1")
    parser.add_argument("--steps", type=int, default=None, help="sampling steps (default: the preset's)")
    parser.add_argument("--guidance", type=float, default=None, help="guidance scale (default: the preset's)")
    parser.add_argument("--strength", type=float, default=1.0, help="CapFace strength (default 1)")
    parser.add_argument("--tau", type=int, default=0, help="identity dropout timestep (0 = off)")
    parser.add_argument("--size", type=int, default=512, help="output side in pixels (default 512)")
    parser.add_argument("--scheduler", choices=("ddim", "dpmpp"), default=None, help="(default ddim)")
    parser.add_argument("--lora", default=None, help="a LoRA file name in checkpoints/lora/")
    parser.add_argument("--lora-scale", type=float, default=1.0, help="LoRA scale (default 1)")


def sampling_fields(args) -> dict:
    """The batch-job fields of :func:`add_sampling_arguments`' flags (unset ones left to the preset)."""
    out = {"preset": args.preset, "strength": args.strength, "tau": args.tau, "resolution": args.size,
           "lora_scale": args.lora_scale}
    for key in ("steps", "guidance", "scheduler", "lora"):
        if getattr(args, key) is not None:
            out[key] = getattr(args, key)
    return out


def job_from_args(args) -> dict:
    """The sweep as one batch job (same validation as a line of a job file)."""
    head = {path: getattr(args, flag) for flag, path in FLAG_PATHS.items() if getattr(args, flag, None) is not None}
    for item in args.expression or []:
        name, value = _parse_expression(item)
        head[name] = value
    job = {"id": "sweep", "reference": args.reference, "prompt": args.prompt, "negative_prompt": args.negative_prompt,
           "sweep": list(args.sweep), "seed": random.randint(0, 2**31 - 1) if args.seed == -1 else args.seed,
           **sampling_fields(args)}
    for key, value in (("pose_reference", args.pose_reference), ("head_state", args.params)):
        if value is not None:
            job[key] = value
    if args.pose_reference:
        job["modes"] = args.modes
    if head:
        job["head"] = head
    return job


def run(args) -> int:
    from caphuman.batch.jobs import job_from_dict
    from caphuman.batch.runner import CONTACT_SHEET
    from caphuman.cli.batch import prepare_run, run_jobs

    dist, accel, weights, head, salt = prepare_run(args)
    if dist.world > 1:
        print("note: sweep runs in one process; use `batch` for several", file=sys.stderr)
        dist = type(dist)()
    job = job_from_dict(job_from_args(args), line=0, base_dir=Path.cwd(), salt=salt)
    print(f"sweep {job.sweep}: {job.sweep.size} images, seed {job.seed}", file=sys.stderr)
    summary = run_jobs(args, [job], dist, accel, weights, flat=True)
    out = Path(args.out)
    if not summary.ok:
        for error in summary.failed.values():
            print(f"error: {error}", file=sys.stderr)
        return 1
    for cell in job.cells():
        print(f"{out / (cell.stem + '.png')}  {cell.label}")
    print(f"{out / CONTACT_SHEET}  contact sheet ({job.sweep.rows} x {job.sweep.columns})")
    return 0
