"""The batch loop: plan batches, take this worker's share, skip what is done, run, write, record.

1. **Plan** (:func:`plan_packs`), from the job list alone: jobs are grouped by sampler settings
   (:meth:`Job.settings_key`: size, steps, scheduler, guidance, strength, tau, LoRA) in file order and
   their images cut into batches of ``batch_size`` -- a batch may mix jobs, prompts, photos and seeds.
   Batches are bundled into *packs* of whole jobs (a pack ends where a batch ends with a job; a job
   larger than a batch spans several batches of one pack).
2. **Share** (:func:`caphuman.batch.distributed.assign`): packs go to workers; a job is in one pack, so
   with one worker. The plan does not depend on the number of workers nor on what is already done:
   every image is computed in the same batch whether the run uses 1 process or 8, whether it runs
   through or resumes after a crash -- so the images are the same (batching changes float rounding on
   CPUs and GPUs alike; a fixed plan makes that irrelevant). Change ``batch_size`` and images may differ
   by a rounding step.
3. **Skip**: a job whose manifest record says done (same fingerprint, files present) is not re-run; in
   the others, images whose sidecar is there are kept. A batch with nothing left to make is skipped; a
   batch with something left runs whole (same rounding) and writes only what is missing.
4. **Run** each batch: prepare (reference analysis and identity from the per-photo cache, head state,
   hint), one pipeline call, write (PNG then sidecar, each atomically; a job whose last image is written
   gets its contact sheet, for a sweep, and its manifest record). Writing happens in a helper thread
   while the next batch runs. With ``overlap`` the next batch is also prepared in a helper thread while
   the pipeline runs: by default on CUDA, and on a CPU only when torch runs one thread (as under torchrun
   / accelerate launch) -- with more, the head posing sets torch's (process-wide) thread count to one for
   a moment (``caphuman.preview._single_thread``), which could change the rounding of a pipeline call
   running at the same time (thread count changes CPU rounding), making images depend on timing.

The models are loaded only when there is something to generate, so a finished run re-runs in seconds.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from caphuman.batch.distributed import Dist, assign
from caphuman.batch.jobs import Cell, Job
from caphuman.batch.manifest import (
    Manifest,
    RunLock,
    atomic_write,
    cell_done,
    encode_png,
    job_done,
    record,
    remove_partials,
)
from caphuman.batch.sweep import apply_values
from caphuman.errors import CapHumanError

CONTACT_SHEET = "contact_sheet.png"
SIDECAR_FORMAT = "caphuman.batch_image/1"


@dataclass
class RunOptions:
    """``out``: output folder; ``batch_size``: images per pipeline call (1-8); ``check``: pose / identity
    check of every image into its sidecar (a face detection and fit per image); ``durable``: fsync every
    image and sidecar (power-cut safe; the manifest is always fsynced); ``overlap``: prepare the next
    batch in a helper thread while the pipeline runs (None: on CUDA, or with one torch thread; writes
    always overlap); ``flat``: one job's files directly in
    ``out`` (the ``sweep`` command) instead of ``out/<job id>/``; ``run_info``: weights, device, dtype...
    for the sidecars."""

    out: Path
    batch_size: int = 4
    check: bool = False
    durable: bool = False
    overlap: bool | None = None
    progress: bool = True
    flat: bool = False
    run_info: dict = field(default_factory=dict)


@dataclass
class _Pending:
    job: Job
    cells: list[Cell]
    remaining: set[int]
    started: float | None = None


@dataclass
class Summary:
    """Outcome over every job of the file (rank 0 after the merge) and this worker's stats."""

    total: int
    done: int
    failed: dict[str, str]
    stats: dict
    ranks: list[dict] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.done == self.total

    def line(self) -> str:
        ranks = self.ranks or [self.stats]
        already, now, images = (sum(r[k] for r in ranks) for k in ("jobs_already_done", "jobs_done", "images"))
        return (f"{self.done}/{self.total} jobs done ({already} already, {now} now"
                + (f", {len(self.failed)} failed" if self.failed else "") + f"); {images} images made")


class Runner:
    """One worker's share of a batch. ``engine``: a :class:`caphuman.batch.engine.Engine` (loaded on
    first need); ``jobs``: the whole validated job list (every worker gets the same)."""

    def __init__(self, engine, jobs: list[Job], opts: RunOptions, dist: Dist | None = None,
                 log: Callable[[str], None] | None = None):
        self.engine = engine
        self.jobs = jobs
        self.opts = opts
        self.dist = dist or Dist()
        self.out = Path(opts.out)
        self.manifest = Manifest(self.out, self.dist.rank, self.dist.world)
        self.log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
        self.failed: dict[str, str] = {}
        self._failed_recorded: set[str] = set()
        self._bases: dict[str, Any] = {}
        self._pending: dict[str, _Pending] = {}
        self._bar = None
        self._lock = threading.Lock()
        self.stats = {"rank": self.dist.rank, "world": self.dist.world, "jobs_total": len(jobs), "jobs_mine": 0,
                      "jobs_already_done": 0, "jobs_done": 0, "jobs_failed": 0, "images": 0, "images_kept": 0,
                      "batches": 0, "batch_size": opts.batch_size, "loop_s": 0.0, "write_s": 0.0}

    # ------------------------------------------------------------------ layout
    def job_dir(self, job: Job) -> Path:
        return self.out if self.opts.flat else self.out / job.id

    def rel(self, path: Path) -> str:
        return path.relative_to(self.out).as_posix()

    # ------------------------------------------------------------------ plan
    def packs(self) -> list[list[list[tuple[Job, Cell]]]]:
        return plan_packs(self.jobs, self.opts.batch_size)

    def my_packs(self) -> list[list[list[tuple[Job, Cell]]]]:
        packs = self.packs()
        ranks = assign([sum(len(b) for b in pack) for pack in packs], self.dist.world)
        return [p for p, r in zip(packs, ranks) if r == self.dist.rank]

    def mine(self) -> list[Job]:
        """This worker's jobs (file order)."""
        ids = {job.id for pack in self.my_packs() for batch in pack for job, _ in batch}
        return [j for j in self.jobs if j.id in ids]

    def plan(self) -> list[list[tuple[Job, Cell, bool]]]:
        """This worker's batches with something left to make, as (job, cell, write) -- ``write`` False for
        an image that exists (it is computed again only to keep the batch as planned). Jobs found complete
        without a record are finalised here."""
        latest = self.manifest.latest()
        packs = self.my_packs()
        jobs = {job.id: job for pack in packs for batch in pack for job, _ in batch}
        self.stats["jobs_mine"] = len(jobs)
        todo: set[tuple[str, int]] = set()
        finished: list[Job] = []
        for job in jobs.values():
            if job_done(latest.get(job.id), job.fingerprint, self.out):
                self.stats["jobs_already_done"] += 1
                continue
            folder = self.job_dir(job)
            folder.mkdir(parents=True, exist_ok=True)
            remove_partials(folder)
            cells = job.cells()
            left = [c for c in cells if not cell_done(folder / f"{c.stem}.png", folder / f"{c.stem}.json",
                                                      job.fingerprint)]
            self.stats["images_kept"] += len(cells) - len(left)
            self._pending[job.id] = _Pending(job, cells, {c.index for c in left})
            todo.update((job.id, c.index) for c in left)
            if not left:
                finished.append(job)
        if finished:  # every image there, the record missing (stopped between the two)
            self.manifest.append([r for r in map(self._finish, finished) if r is not None] + self._failure_records())
        batches = []
        for pack in packs:
            for batch in pack:
                marked = [(job, cell, (job.id, cell.index) in todo) for job, cell in batch]
                if any(w for _, _, w in marked):
                    batches.append(marked)
        return batches

    # ------------------------------------------------------------------ stages
    def _base(self, job: Job, ref) -> Any:
        if job.id not in self._bases:
            self._bases[job.id] = job.base_state(ref.head.state)
        return self._bases[job.id]

    def _fail(self, job: Job, message: str) -> None:
        with self._lock:
            self.failed.setdefault(job.id, message)

    def prepare(self, batch: list[tuple[Job, Cell, bool]]) -> tuple[list[dict], int]:
        """Items ready for the pipeline, and how many images to make were dropped (their job failed)."""
        items, dropped = [], 0
        for job, cell, write in batch:
            if job.id in self.failed:
                dropped += write
                continue
            pending = self._pending.get(job.id)
            if pending is not None and pending.started is None:
                pending.started = time.perf_counter()
            try:
                ref = self.engine.reference(job)
                base = self._base(job, ref)
                state = apply_values(base, cell.values) if cell.values else base
                hint = self.engine.hint(state, job.resolution)
            except Exception as exc:  # noqa: BLE001 - one bad job must not stop a dataset run
                if write:
                    msg = str(exc) if isinstance(exc, CapHumanError) else f"unexpected {type(exc).__name__}: {str(exc)[:300]}"
                    self._fail(job, msg)
                    dropped += 1
                continue
            items.append({"job": job, "cell": cell, "write": write, "state": state, "hint": hint, "reference": ref,
                          "prompt": job.prompt, "negative_prompt": job.negative_prompt, "seed": cell.seed})
        return items, dropped

    def generate(self, items: list[dict]):
        if not items:
            return None
        try:
            return self.engine.generate(items[0]["job"], items)
        except CapHumanError as exc:
            error = str(exc)
        except Exception as exc:  # noqa: BLE001 - e.g. out of GPU memory: record it, go on with other batches
            error = f"generation failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
        self.log(f"error: {error}")
        for it in items:
            if it["write"]:
                self._fail(it["job"], error)
        return None

    def write(self, items: list[dict], images, dropped: int) -> None:
        t0 = time.perf_counter()
        records = []
        finished = []
        if images is not None:
            for it, image in zip(items, images):
                job, cell = it["job"], it["cell"]
                if not it["write"] or job.id in self.failed:
                    continue
                folder = self.job_dir(job)
                png = folder / f"{cell.stem}.png"
                atomic_write(png, encode_png(image), self.opts.durable)
                sidecar = self._sidecar(it, png, image)
                atomic_write(folder / f"{cell.stem}.json", (json.dumps(sidecar, indent=2, default=str) + "\n").encode(),
                             self.opts.durable)
                self.stats["images"] += 1
                pending = self._pending[job.id]
                pending.remaining.discard(cell.index)
                if not pending.remaining:
                    finished.append(job)
        records += [r for r in map(self._finish, finished) if r is not None]
        records += self._failure_records()
        self.manifest.append(records)
        self.stats["write_s"] += time.perf_counter() - t0
        if self._bar is not None:
            self._bar.update(sum(it["write"] for it in items) + dropped)
            self._bar.set_postfix_str(f"jobs {self.stats['jobs_done']} done"
                                      + (f", {self.stats['jobs_failed']} failed" if self.stats["jobs_failed"] else ""),
                                      refresh=False)

    def _failure_records(self) -> list[dict]:
        out = []
        with self._lock:
            new = [(k, v) for k, v in self.failed.items() if k not in self._failed_recorded]
        for job_id, error in new:
            self._failed_recorded.add(job_id)
            pending = self._pending.get(job_id)
            if pending is None:
                continue
            self.stats["jobs_failed"] += 1
            self.log(f"job {job_id} (line {pending.job.line}) failed: {error}")
            out.append(record(pending.job, "failed", [], error, self.dist.rank, self._seconds(pending)))
        return out

    @staticmethod
    def _seconds(pending: _Pending) -> float | None:
        return None if pending.started is None else time.perf_counter() - pending.started

    def _sidecar(self, it: dict, png: Path, image) -> dict:
        job, cell = it["job"], it["cell"]
        side = {"format": SIDECAR_FORMAT, "job": job.id, "line": job.line, "fingerprint": job.fingerprint,
                "cell": cell.index, "image": png.name, "seed": cell.seed, "sweep": cell.values or None,
                "label": cell.label if cell.values else None, "head_state": it["state"].to_dict(),
                "parameters": job.to_dict(), "run": self.opts.run_info,
                "reference_warnings": it["reference"].warnings}
        if self.opts.check:
            try:
                side["checks"] = self.engine.check(image, it["state"], it["reference"])
            except CapHumanError as exc:
                side["checks"] = {"error": str(exc)}
        return side

    def _finish(self, job: Job) -> dict | None:
        """The done record, or None (the job is marked failed) when the contact sheet cannot be made."""
        try:
            return self._finalise(job)
        except (OSError, CapHumanError, ValueError) as exc:
            self._fail(job, f"finishing the job failed: {exc}")
            return None

    def _finalise(self, job: Job) -> dict:
        """Contact sheet (sweeps), then the job's done record."""
        folder = self.job_dir(job)
        pending = self._pending[job.id]
        files = []
        for c in pending.cells:
            files += [self.rel(folder / f"{c.stem}.png"), self.rel(folder / f"{c.stem}.json")]
        if job.sweep is not None:
            from PIL import Image

            from caphuman.batch.contact_sheet import contact_sheet

            pics = []
            for c in pending.cells:
                with Image.open(folder / f"{c.stem}.png") as im:
                    pics.append(im.convert("RGB"))
            title = f"{job.prompt[:120]} · seed {job.seed} · {job.sweep}"
            sheet = contact_sheet(pics, [c.label for c in pending.cells], job.sweep.columns, title=title)
            atomic_write(folder / CONTACT_SHEET, encode_png(sheet), self.opts.durable)
            files.append(self.rel(folder / CONTACT_SHEET))
        self.stats["jobs_done"] += 1
        return record(job, "done", files, None, self.dist.rank, self._seconds(pending))

    # ------------------------------------------------------------------ the loop
    def run(self) -> dict:
        t_start = time.perf_counter()
        batches = self.plan()
        total = sum(w for b in batches for _, _, w in b)
        self.stats["batches"] = len(batches)
        if batches:
            if self.engine.pipe is None or self.engine.head_pipeline is None:
                self.engine.load(log=self.log if self.dist.main else None)
            overlap = self.opts.overlap if self.opts.overlap is not None else self._prefetch_is_safe()
            self._bar = self._progress(total)
            t0 = time.perf_counter()
            self.stats["loop_start_unix"] = time.time()
            try:
                self._loop(batches, prefetch=overlap)
            finally:
                self.stats["loop_s"] = time.perf_counter() - t0
                self.stats["loop_end_unix"] = time.time()
                self.stats["overlap"] = overlap
                if self._bar is not None:
                    self._bar.close()
                    self._bar = None
        tail = self._failure_records()
        if tail:
            self.manifest.append(tail)
        self.stats["wall_s"] = time.perf_counter() - t_start
        self.stats["timings"] = {k: round(v, 4) for k, v in self.engine.timings.items()}
        self.stats["pipeline_calls"] = self.engine.pipeline_calls
        self.stats["failed"] = dict(self.failed)
        return self.stats

    def _prefetch_is_safe(self) -> bool:
        """Default of ``overlap``: on CUDA, and on a CPU when torch runs one thread (as under torchrun /
        accelerate launch): then the head posing never switches torch's thread count under a running
        pipeline call (see the module docstring)."""
        import torch

        return self.engine.accel.device == "cuda" or torch.get_num_threads() == 1

    def _loop(self, batches, prefetch: bool) -> None:
        """prepare -> generate -> write; batch k is written in a helper thread while batch k + 1 runs (at most
        one batch waiting); with ``prefetch`` batch k + 1 is also prepared while batch k runs."""
        prep = ThreadPoolExecutor(1, thread_name_prefix="caphuman-prepare") if prefetch else None
        writer = ThreadPoolExecutor(1, thread_name_prefix="caphuman-write")
        written = None
        try:
            upcoming = prep.submit(self.prepare, batches[0]) if prep else None
            for i, batch in enumerate(batches):
                if prep:
                    items, dropped = upcoming.result()
                    if i + 1 < len(batches):
                        upcoming = prep.submit(self.prepare, batches[i + 1])
                else:
                    items, dropped = self.prepare(batch)
                images = self.generate(items)
                if written is not None:
                    written.result()
                written = writer.submit(self.write, items, images, dropped)
            if written is not None:
                written.result()
        finally:
            if prep:
                prep.shutdown(wait=True, cancel_futures=True)
            writer.shutdown(wait=True, cancel_futures=True)

    def _progress(self, total: int):
        if not self.opts.progress or not self.dist.main or total == 0:
            return None
        from tqdm.auto import tqdm

        desc = "images" if self.dist.world == 1 else f"rank 0/{self.dist.world}"
        return tqdm(total=total, desc=desc, unit="img", file=sys.stderr, dynamic_ncols=True, mininterval=0.5)


# ---------------------------------------------------------------------------- the plan
#: A pack closes at the first job boundary after this many batches, even inside a batch (the batch then
#: runs part-full): bounds the work units that are shared between workers.
MAX_PACK_BATCHES = 4


def plan_packs(jobs: list[Job], batch_size: int) -> list[list[list[tuple[Job, Cell]]]]:
    """Packs (lists of batches of (job, cell)) of whole jobs, from the job list alone (see the module
    docstring). Batches hold images of one settings group, in file order; a pack ends where a batch ends
    with a job, or at the first job boundary after :data:`MAX_PACK_BATCHES` batches."""
    size = max(1, min(8, int(batch_size)))
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.settings_key(), []).append(job)
    packs: list[list[list[tuple[Job, Cell]]]] = []
    for members in groups.values():
        pack: list[list[tuple[Job, Cell]]] = []
        batch: list[tuple[Job, Cell]] = []
        for job in members:
            cells = job.cells()
            if batch and len(cells) > size - len(batch) and len(pack) + 1 >= MAX_PACK_BATCHES:
                pack.append(batch)  # long enough: end the pack here rather than split this job across it
                packs.append(pack)
                pack, batch = [], []
            for cell in cells:
                batch.append((job, cell))
                if len(batch) == size:
                    pack.append(batch)
                    batch = []
            if not batch and pack:  # the job ended with a batch: a natural end of a pack
                packs.append(pack)
                pack = []
        if batch:
            pack.append(batch)
        if pack:
            packs.append(pack)
    return packs


# ---------------------------------------------------------------------------- a whole run
def check_out_folder(out: str | Path, create: bool = True) -> Path:
    """``out`` as a folder the run can use (created if missing and ``create``), or an InputError: an
    existing file, a parent that is a file, no permission."""
    from caphuman.errors import InputError

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is an existing file, not a folder; name a folder for the results")
    if not create:
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create the folder ({exc.strerror or type(exc).__name__})") from None
    return out


def run_batch(engine, jobs: list[Job], opts: RunOptions, dist: Dist | None = None,
              log: Callable[[str], None] | None = None) -> Summary:
    """Lock the folder (rank 0), fold parts a dead worker left, run this worker's share, wait for the others,
    merge the manifest (rank 0). Returns the summary (over every job on rank 0; this worker's elsewhere)."""
    dist = dist or Dist()
    out = check_out_folder(opts.out)
    lock = RunLock(out)
    error = None
    if dist.main:
        try:
            lock.acquire()
            Manifest(out, 0, dist.world).merge_parts()
        except CapHumanError as exc:
            error = str(exc)
    error = dist.broadcast(error)
    if error:
        from caphuman.errors import InputError

        raise InputError(error)
    try:
        dist.barrier()  # nobody reads the manifest while rank 0 folds old parts in
        runner = Runner(engine, jobs, opts, dist, log)
        stats = runner.run()
        ranks = dist.all_gather(stats)  # also a barrier: everyone's records are on disk
        manifest = Manifest(out, dist.rank, dist.world)
        if dist.main:
            manifest.merge_parts()
        latest = manifest.latest()
        scope = jobs if dist.main else runner.mine()
        done = sum(job_done(latest.get(j.id), j.fingerprint, out) for j in scope)
        failed = {j.id: latest[j.id].get("error") or "" for j in scope
                  if latest.get(j.id, {}).get("status") == "failed" and latest[j.id].get("fingerprint") == j.fingerprint}
        return Summary(total=len(scope), done=done, failed=failed, stats=stats, ranks=ranks)
    finally:
        lock.release()


__all__ = ["CONTACT_SHEET", "MAX_PACK_BATCHES", "RunOptions", "Runner", "Summary", "check_out_folder", "plan_packs",
           "run_batch"]
