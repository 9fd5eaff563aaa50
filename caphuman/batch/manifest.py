"""The manifest of a batch run, atomic output files, and what "done" means on resume.

``OUT/manifest.jsonl`` is an append-only log, one JSON record per finished (or failed) job::

    {"job": "ada-yaw", "line": 3, "status": "done", "files": ["ada-yaw/000_yaw-60.png", ...],
     "seed": 7, "error": null, "fingerprint": "…", "rank": 0, "time": 1700000000.0, "seconds": 4.2}

Records are appended and fsynced as jobs finish, never rewritten, so the history shows every
attempt. With several processes each rank appends to its own ``manifest.rank{R}.jsonl``; rank 0 folds
the parts into ``manifest.jsonl`` at the end (and, at the start of a run, any part a dead worker left
behind). Readers take the latest record of each job across the main file and the parts.

A job is done iff its latest record says ``done`` with the job's current fingerprint and every file
it lists exists (non-empty). Inside an unfinished job, an image counts as done when its sidecar JSON
(written after the image) names the job's fingerprint and the image exists: a crash loses at most the
images in flight. Every output is written to a hidden ``.NAME.PID.part`` file and renamed into place
(:func:`atomic_write`), so a final path never holds a partial file; leftover parts are removed at
the next start (:func:`remove_partials`).
"""

from __future__ import annotations

import errno
import json
import os
import time
from pathlib import Path
from typing import Any, Iterable

from caphuman.errors import InputError

MANIFEST = "manifest.jsonl"
LOCK = ".caphuman-batch.lock"
PART_SUFFIX = ".part"


def part_path(out: Path, rank: int) -> Path:
    return Path(out) / f"manifest.rank{rank}.jsonl"


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}{PART_SUFFIX}")


def atomic_write(path: str | Path, data: bytes, durable: bool = False) -> Path:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``: readers (and a resumed run) see
    the old file or the whole new one, never a partial one. ``durable``: fsync the file first (survives
    a power cut, ~1 ms per file), not only a crash of this process."""
    path = Path(path)
    tmp = _tmp(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    return path


def encode_png(image: Any) -> bytes:
    """uint8 (H, W, 3) array or PIL image -> PNG bytes."""
    import io

    from PIL import Image

    im = image if isinstance(image, Image.Image) else Image.fromarray(image)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def remove_partials(folder: str | Path) -> int:
    """Delete ``.*.part`` files a killed run left in ``folder`` (not recursive); returns how many."""
    n = 0
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return 0
    for e in entries:
        if e.name.startswith(".") and e.name.endswith(PART_SUFFIX) and e.is_file():
            try:
                os.unlink(e.path)
                n += 1
            except FileNotFoundError:
                pass
    return n


def read_records(path: str | Path) -> list[dict]:
    """Records of one manifest file; unreadable lines (a line cut by a crash) are skipped."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for line in raw.splitlines():
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(rec, dict) and isinstance(rec.get("job"), str):
            out.append(rec)
    return out


def _append_lines(path: Path, lines: Iterable[bytes], fsync: bool = True) -> None:
    lines = list(lines)
    if not lines:
        return
    with open(path, "ab+") as fh:
        fh.seek(0, os.SEEK_END)
        if fh.tell() > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":  # a line cut by a crash: start a fresh line after it
                fh.write(b"\n")
        fh.write(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())


class Manifest:
    """The manifest of ``out`` as seen by worker ``rank`` of ``world``."""

    def __init__(self, out: str | Path, rank: int = 0, world: int = 1):
        self.out = Path(out)
        self.rank, self.world = rank, world
        self.main = self.out / MANIFEST
        #: where this worker appends
        self.path = self.main if world == 1 else part_path(self.out, rank)

    def parts(self) -> list[Path]:
        return sorted(self.out.glob("manifest.rank*.jsonl"))

    def records(self) -> list[dict]:
        """Every record: the main file, then the parts; ordered by time (stable)."""
        recs = read_records(self.main)
        for p in self.parts():
            recs += read_records(p)
        return sorted(recs, key=lambda r: float(r.get("time") or 0.0))

    def latest(self) -> dict[str, dict]:
        out: dict[str, dict] = {}
        for r in self.records():
            out[r["job"]] = r
        return out

    def append(self, records: list[dict], fsync: bool = True) -> None:
        """Append records (one fsync for the lot)."""
        _append_lines(self.path, (json.dumps(r, default=str).encode() for r in records), fsync)

    def merge_parts(self) -> int:
        """Fold every ``manifest.rank*.jsonl`` into ``manifest.jsonl`` (lines already there are not repeated,
        so a merge cut short can run again) and delete the parts. Call with the run lock held, while no
        worker appends. Returns the number of records added."""
        existing = set(self.main.read_bytes().splitlines()) if self.main.is_file() else set()
        added = 0
        for part in self.parts():
            new = []
            for line in part.read_bytes().splitlines():
                try:
                    json.loads(line)
                except (json.JSONDecodeError, UnicodeDecodeError):
                    continue  # cut by a crash
                if line not in existing:
                    existing.add(line)
                    new.append(line)
            _append_lines(self.main, new)
            added += len(new)
            part.unlink()
        return added


def job_done(record: dict | None, fingerprint: str, out: Path) -> bool:
    """The record says done for this exact job and every file it lists is there."""
    if not record or record.get("status") != "done" or record.get("fingerprint") != fingerprint:
        return False
    files = record.get("files") or []
    return bool(files) and all(_nonempty(Path(out) / f) for f in files)


def _nonempty(path: Path) -> bool:
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def cell_done(image: Path, sidecar: Path, fingerprint: str) -> bool:
    """An image of an unfinished job is kept when its sidecar names the job's fingerprint."""
    if not _nonempty(image):
        return False
    try:
        return json.loads(sidecar.read_text()).get("fingerprint") == fingerprint
    except (OSError, ValueError, AttributeError):
        return False


def record(job, status: str, files: list[str], error: str | None, rank: int, seconds: float | None = None) -> dict:
    return {"job": job.id, "line": job.line, "status": status, "files": files, "seed": job.seed, "error": error,
            "fingerprint": job.fingerprint, "rank": rank, "time": round(time.time(), 6),
            "seconds": None if seconds is None else round(seconds, 3)}


class RunLock:
    """Exclusive lock on ``out`` for one run (held by rank 0): a second run on the same folder is refused
    instead of computing the same jobs twice. ``fcntl.flock``: local file systems, and NFS v4 on Linux."""

    def __init__(self, out: str | Path):
        self.path = Path(out) / LOCK
        self._fh = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            fh.close()
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise InputError(f"another batch run is using {self.path.parent} (lock {self.path.name}); wait for "
                                 "it to finish, or use another --out") from None
            raise
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()


__all__ = ["MANIFEST", "Manifest", "RunLock", "atomic_write", "cell_done", "encode_png", "job_done", "part_path",
           "read_records", "record", "remove_partials"]
