"""One evaluation run: read the material, write and run the jobs plan through the batch engine, score every
image (cached), write ``scores.csv``, ``summary.json`` and ``summary.png``.

Output folder::

    OUT/jobs.jsonl        the plan (a batch jobs file: ``python -m caphuman batch OUT/jobs.jsonl`` runs it too)
    OUT/generated/        the batch output: <job id>/NNN.png + .json sidecars, manifest.jsonl
    OUT/scores.jsonl      score cache, one record per scored image (image hash + scorer signature)
    OUT/scores.csv        one row per planned image (refs x prompts x conditions x seeds x num_images)
    OUT/summary.json      counts, statistics, per-|yaw|-bin pose errors, the paper's numbers beside ours
    OUT/summary.png       the plot

Running it again skips the images that exist (the batch manifest) and the scores that are cached
(``--rescore`` recomputes them, e.g. after the face fit improved).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from caphuman.errors import InputError

GENERATED = "generated"
PLAN = "jobs.jsonl"
SCORES = "scores.jsonl"
CSV = "scores.csv"
SUMMARY = "summary.json"
PLOT = "summary.png"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _load_cache(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return out
    for line in lines:
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue  # a line cut by a crash
        if isinstance(rec, dict) and isinstance(rec.get("key"), str) and isinstance(rec.get("score"), dict):
            out[rec["key"]] = rec["score"]
    return out


def _append(path: Path, records: list[dict]) -> None:
    if records:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps(r, default=str) + "\n" for r in records))


def run_evaluation(args: argparse.Namespace) -> int:
    from caphuman.batch.distributed import Dist
    from caphuman.batch.jobs import parse_jobs
    from caphuman.batch.manifest import Manifest, cell_done
    from caphuman.cli.batch import prepare_run, run_jobs
    from caphuman.cli.sweep import sampling_fields
    from caphuman.evaluation import inputs, metrics, report
    from caphuman.face.transfer import parse_modes

    # 1. the material (every problem named before anything runs)
    edges = metrics.parse_edges(args.yaw_bins)
    refs = inputs.load_references(args.references)
    prompts = inputs.load_prompts(args.prompts)
    conds = inputs.load_conditions(args.conditions)
    seeds = inputs.parse_seeds(args.seeds)
    modes = ",".join(parse_modes(args.condition_modes))
    if not modes:
        raise InputError("--condition-modes: name at least one of position, pose, expression, lighting (or all)")
    for c in conds:
        for note in c.notes:
            _say(f"warning: --conditions: {note}")
    settings = {**sampling_fields(args), "negative_prompt": args.negative_prompt}
    planned = inputs.plan_jobs(refs, prompts, conds, seeds, settings, modes, args.num_images)
    from caphuman.batch.jobs import job_from_dict

    job_from_dict(planned[0].job)  # the generation settings, checked before any model is looked for

    # 2. the plan, through the batch engine
    out = Path(args.out)
    gen = out / GENERATED
    dist, accel, weights, head, salt = prepare_run(args)
    if dist.world > 1:
        _say("note: evaluate runs in one process; run OUT/jobs.jsonl with `batch` on several, then evaluate again")
        dist = Dist()
    plan_path = inputs.write_plan(out / PLAN, planned)
    jobfile = parse_jobs(plan_path, salt=salt)
    if jobfile.errors:
        seen = []
        for e in jobfile.errors:
            if e.message not in seen:
                seen.append(e.message)
        for m in seen:
            _say(f"error: {m}")
        return 2
    jobs = {j.id: j for j in jobfile.jobs}
    n_images = jobfile.num_images
    _say(f"evaluate: {len(refs)} photos x {len(prompts)} prompts x {len(conds)} conditions x {len(seeds)} seeds"
         f" x {args.num_images} images = {n_images} images")
    batch_args = argparse.Namespace(**{**vars(args), "out": str(gen)})
    summary = run_jobs(batch_args, jobfile.jobs, dist, accel, weights)
    _say(summary.line())

    # 3. scores
    from caphuman.controls.state import HeadState
    from caphuman.evaluation.scoring import ImageScore, ImageScorer, find_clip, find_facenet
    from caphuman.preview import HeadPreviewPipeline

    device = accel.device
    embedder = find_facenet(weights, args.facenet, device)
    clip = find_clip(args.clip, device)
    pipeline = HeadPreviewPipeline(head.data)
    deca = None
    if "flame" in (head.data.name or "").lower():
        from caphuman.face.analysis import load_encoders

        deca = load_encoders(clip=False).deca
    scorer = ImageScorer(pipeline, embedder, clip, deca=deca)
    sig = scorer.signature()
    cache_path = out / SCORES
    cache = {} if args.rescore else _load_cache(cache_path)
    latest = Manifest(gen).latest()
    rows, fresh = [], []
    for pj in planned:
        job = jobs[pj.job["id"]]
        rec = latest.get(job.id) or {}
        failed = rec.get("status") == "failed" and rec.get("fingerprint") == job.fingerprint
        for cell in job.cells():
            png, side = gen / job.id / f"{cell.stem}.png", gen / job.id / f"{cell.stem}.json"
            row = {"reference": pj.reference.name, "prompt_index": pj.prompt.index, "prompt": pj.prompt.text,
                   "condition": pj.condition.name, "seed": pj.seed, "image_index": cell.index,
                   "image_seed": cell.seed, "job": job.id, "image": png.relative_to(out).as_posix()}
            if not cell_done(png, side, job.fingerprint):
                row["status"] = "failed" if failed else "missing"
                row["error"] = rec.get("error") if failed else "not generated (the run stopped before it)"
                rows.append(row)
                continue
            data = png.read_bytes()
            requested = HeadState.from_dict(json.loads(side.read_text())["head_state"])
            key = hashlib.sha256(b"|".join([data, sig.encode(), requested.to_json(None).encode(),
                                            job.reference_sha.encode(), job.prompt.encode()])).hexdigest()
            if key in cache:
                score = ImageScore.from_dict(cache[key])
            else:
                score = scorer.score(png, requested, job.reference, job.prompt)
                fresh.append({"key": key, "image": row["image"], "score": score.to_dict()})
                if len(fresh) >= 64:
                    _append(cache_path, fresh)
                    fresh.clear()
            row.update(_score_columns(score, edges))
            row["status"] = "ok"
            rows.append(row)
    _append(cache_path, fresh)

    # 4. reports
    info = {"counts": {"references": len(refs), "prompts": len(prompts), "conditions": len(conds),
                       "seeds": len(seeds), "num_images": args.num_images},
            "scorers": {"identity": embedder.name, "identity_note": embedder.note, "clip": clip.name,
                        "clip_note": clip.note, "detector": scorer.detector.name, "head": head.description,
                        "fit_target": scorer.target.name, "deca": deca is not None,
                        "yaw_bin_edges": list(edges)},
            "settings": {"weights": str(weights), "device": accel.device, "dtype": accel.dtype,
                         "condition_modes": modes, "seeds": seeds, **settings},
            "files": {"plan": PLAN, "generated": GENERATED, "csv": CSV, "plot": PLOT, "score_cache": SCORES}}
    result = report.summarize(rows, info, edges)
    report.write_csv(out / CSV, rows)
    report.write_json(out / SUMMARY, result)
    report.plot(result, rows, out / PLOT)
    print(report.table(result))
    print(f"identity: {embedder.name or 'n/a (' + str(embedder.note) + ')'}")
    print(f"text alignment: {clip.name or 'n/a (' + str(clip.note) + ')'}")
    for name in (CSV, SUMMARY, PLOT):
        print(out / name)
    if summary.failed:
        for job_id, error in summary.failed.items():
            _say(f"failed: {job_id}: {error}")
        return 1
    return 0


def _score_columns(s, edges) -> dict:
    from caphuman.evaluation.metrics import yaw_bin

    row = {"detector": s.detector, "fit": s.fit, "faces": s.faces, "identity": s.identity,
           "identity_note": s.identity_note, "clip_cosine": s.clip_cosine, "clip_score": s.clip_score,
           "clip_note": s.clip_note, "pose_aa_rmse": s.pose_aa_rmse, "pose_note": s.pose_note,
           "expression_rmse": s.expression_rmse, "expression_note": s.expression_note,
           "lighting_rmse": s.lighting_rmse, "lighting_note": s.lighting_note,
           "yaw_bin": yaw_bin(s.requested.get("yaw", 0.0), edges)}
    for axis in ("yaw", "pitch", "roll"):
        row[f"{axis}_requested"] = s.requested.get(axis)
        row[f"{axis}_estimated"] = None if s.estimated is None else s.estimated.get(axis)
        row[f"{axis}_error"] = None if s.pose_error is None else s.pose_error.get(axis)
    return row


__all__ = ["CSV", "GENERATED", "PLAN", "PLOT", "SCORES", "SUMMARY", "run_evaluation"]
