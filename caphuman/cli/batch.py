"""``python -m caphuman batch JOBS.jsonl --out DIR``: many portraits from a job file, resumable.

One job per line (format: :mod:`caphuman.batch.jobs`). Every line is checked before anything runs;
a bad line is reported with its number and nothing runs (``--skip-invalid`` runs the valid ones).
Outputs: ``DIR/<job id>/NNN[_values].png`` + ``.json`` sidecar per image, ``contact_sheet.png`` per
sweep, and ``DIR/manifest.jsonl`` (one record per finished job, appended as jobs finish). Running the
same command again skips finished jobs; after a crash or Ctrl+C it finishes the rest.

Several GPUs / machines: start it with an existing launcher, one process per GPU::

    accelerate launch --num_processes 4 -m caphuman batch jobs.jsonl --out DIR
    torchrun --nproc_per_node 4 -m caphuman batch jobs.jsonl --out DIR

Jobs are split deterministically between the processes; each writes its own manifest part, merged
into DIR/manifest.jsonl at the end (see :mod:`caphuman.batch.distributed`).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

from caphuman.errors import InputError


def add_run_arguments(parser: argparse.ArgumentParser, head: bool = True) -> None:
    """Options shared by ``batch`` and ``sweep``: models, device, batching, outputs."""
    g = parser.add_argument_group("models and device")
    g.add_argument("--weights", default=None,
                   help="converted CapHuman folder or Hub repo id (default: checkpoints/caphuman-diffusers, "
                        "then $CAPHUMAN_WEIGHTS_REPO from the Hub cache)")
    if head:
        g.add_argument("--head", default="auto", help="auto | builtin | PATH (FLAME folder/.pkl or head .npz)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="(default auto; with several processes each uses the GPU of its LOCAL_RANK)")
    g.add_argument("--dtype", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                   help="auto: fp16 on CUDA, fp32 on CPU")
    g.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="NHWC memory format for the UNet and CapFace (default: on with CUDA)")
    g.add_argument("--compile", action="store_true", help="torch.compile the UNet and CapFace (long runs)")
    r = parser.add_argument_group("batching and outputs")
    r.add_argument("--batch-size", type=int, default=4,
                   help="images per pipeline call, 1-8 (default 4); images of the same size and sampler settings "
                        "are batched across jobs, and each equals the image a one-image run makes with its seed")
    r.add_argument("--check", action="store_true",
                   help="check every image (pose asked vs estimated, identity similarity) into its sidecar; "
                        "costs a face detection and fit per image")
    r.add_argument("--durable", action="store_true",
                   help="fsync every image and sidecar (survives a power cut; the manifest is always fsynced)")
    r.add_argument("--overlap", action=argparse.BooleanOptionalAction, default=None,
                   help="prepare the next batch (hints) while the pipeline runs (default: on CUDA, and on a CPU "
                        "when torch runs one thread, e.g. under torchrun; forced on a CPU with more threads, images "
                        "may vary by a rounding step between runs); writing always overlaps")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--stats-json", metavar="PATH", default=None,
                   help="write this process's timings as JSON (several processes: PATH.rankR.json)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("jobs", help="JSONL file, one job per line (see the README's Batch section)")
    parser.add_argument("--out", required=True, help="output folder (re-running with the same folder resumes)")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="run the valid lines even if some are not (they are listed, then skipped)")
    parser.add_argument("--validate-only", action="store_true", help="check the file, report, run nothing")
    add_run_arguments(parser)


# ---------------------------------------------------------------------------- shared with `sweep`
def _sigterm_as_interrupt() -> None:
    """A scheduler's SIGTERM stops the run like Ctrl+C: the images in flight are lost, nothing else."""
    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread (tests calling run() from a thread)
        pass


def prepare_run(args):
    """(Dist, Acceleration, weights Path, head, fingerprint salt) for this process."""
    from caphuman.batch.distributed import Dist
    from caphuman.diffusion.acceleration import Acceleration
    from caphuman.head.resolve import load_head
    from caphuman.weights.download import resolve_weights

    if not 1 <= args.batch_size <= 8:
        raise InputError("--batch-size must be between 1 and 8")
    dist = Dist.from_env()
    accel = Acceleration.for_device(args.device, args.dtype, channels_last=args.channels_last, compile=args.compile)
    if accel.device == "cuda" and dist.world > 1:
        import torch

        torch.cuda.set_device(dist.local_rank % torch.cuda.device_count())  # "cuda" is now this rank's GPU
    weights = resolve_weights(args.weights)
    head = load_head(args.head)
    salt = f"weights={weights.name}|dtype={accel.dtype}|head={head.kind}:{head.data.name}"
    return dist, accel, weights, head, salt


def run_jobs(args, jobs, dist, accel, weights, flat: bool = False):
    """Run ``jobs`` into ``args.out``; returns the :class:`caphuman.batch.runner.Summary`."""
    from caphuman.batch.engine import Engine
    from caphuman.batch.runner import RunOptions, run_batch

    _sigterm_as_interrupt()
    engine = Engine(weights, accel, head=args.head)
    info = {"weights": str(weights), "device": accel.device, "dtype": accel.dtype,
            "acceleration": accel.describe(), "head": args.head, "batch_size": args.batch_size}
    opts = RunOptions(out=Path(args.out), batch_size=args.batch_size, check=args.check, durable=args.durable,
                      overlap=args.overlap, progress=not args.no_progress, flat=flat, run_info=info)
    summary = run_batch(engine, jobs, opts, dist)
    if args.stats_json:
        path = Path(args.stats_json)
        if dist.world > 1:
            path = path.with_name(f"{path.stem}.rank{dist.rank}{path.suffix or '.json'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(summary.stats, indent=2, default=str) + "\n")
    return summary


# ---------------------------------------------------------------------------- batch
def run(args) -> int:
    from caphuman.batch.jobs import parse_jobs

    if not args.validate_only:
        from caphuman.batch.runner import check_out_folder

        check_out_folder(args.out, create=False)  # before any weights are loaded
    dist, accel, weights, head, salt = prepare_run(args)
    jobfile = parse_jobs(args.jobs, salt=salt)
    say = (lambda msg: print(msg, file=sys.stderr)) if dist.main else (lambda msg: None)
    for w in jobfile.warnings:
        say(f"{args.jobs}:{w.line}: warning: {w.message}")
    for e in jobfile.errors:
        say(f"{args.jobs}:{e.line}: {e.message}" if e.line else f"{args.jobs}: {e.message}")
    n_images = jobfile.num_images
    if jobfile.errors and not (args.skip_invalid and jobfile.jobs):
        say(f"{len(jobfile.errors)} invalid line{'s' if len(jobfile.errors) > 1 else ''}; nothing was run"
            + ("" if args.skip_invalid else " (fix them, or pass --skip-invalid to run the valid lines)"))
        return 2
    if jobfile.errors:
        say(f"skipping {len(jobfile.errors)} invalid line(s)")
    if args.validate_only:
        say(f"{len(jobfile.jobs)} valid jobs, {n_images} images")
        return 0 if not jobfile.errors else 2
    dist.init()
    try:
        digests = dist.all_gather(jobfile.digest)
        if len(set(digests)) > 1:
            raise InputError("the workers do not see the same jobs (different job files or photos on different "
                             "machines?); every worker must read the same file and photos")
        say(f"{len(jobfile.jobs)} jobs, {n_images} images" + (f", {dist.world} processes" if dist.world > 1 else ""))
        summary = run_jobs(args, jobfile.jobs, dist, accel, weights)
        if dist.main:
            print(f"{summary.line()}; manifest: {Path(args.out) / 'manifest.jsonl'}")
            for job_id, error in summary.failed.items():
                print(f"failed: {job_id}: {error}", file=sys.stderr)
        return 0 if summary.ok else 1
    finally:
        dist.close()
