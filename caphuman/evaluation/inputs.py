"""The evaluation's material and its jobs plan.

* **references**: the photos of a folder (``.jpg .jpeg .png .webp .bmp .tif .tiff``, not recursive,
  hidden files skipped), each decoded once here so a bad one is named before anything runs;
* **prompts**: a UTF-8 text file, one prompt per line (blank lines and ``#`` lines skipped);
* **conditions**: head states (:meth:`caphuman.controls.state.HeadState.from_dict`, the one validation
  layer): a folder of ``.json`` files (one state each, named by the file), or one ``.json`` file
  holding a list of states (or one state). In a list an item may carry ``"name"`` beside the state's
  fields; otherwise it is named ``c00``, ``c01``, ...;
* **seeds**: ``1,2,3`` (0 .. 2**32-1, no repeats); each job makes ``num_images`` images from its seed on.

:func:`plan_jobs` turns the product into batch jobs (:mod:`caphuman.batch.jobs`), one per (photo,
prompt, condition, seed), with ids built from the names, so the same material gives the same ids
and a resumed run finds its images.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caphuman.errors import InputError

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Longest prompt file read (characters); a prompt list is text, not a data set dump.
MAX_PROMPTS_CHARS = 2_000_000


@dataclass(frozen=True)
class Reference:
    name: str
    path: str  # absolute


@dataclass(frozen=True)
class Prompt:
    index: int  # 0-based, in file order (blank and comment lines not counted)
    line: int  # 1-based line number in the file
    text: str


@dataclass(frozen=True)
class Condition:
    """``state``: the validated head state as a dict; ``source``: the file (and list index) it came from."""

    name: str
    state: dict
    source: str
    notes: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- references
def load_references(folder: str | Path) -> list[Reference]:
    """The photos of ``folder``, sorted by name; each decoded once (InputError names a bad file)."""
    from caphuman.face.intake import load_image

    d = Path(folder).expanduser()
    if not d.exists():
        raise InputError(f"--references: no such folder {folder}")
    if not d.is_dir():
        raise InputError(f"--references: {folder} is a file; give the folder that holds the reference photos")
    photos = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith(".")
                    and p.suffix.lower() in PHOTO_SUFFIXES)
    if not photos:
        raise InputError(f"--references: no photos in {folder} (looked for {' '.join(PHOTO_SUFFIXES)})")
    out = []
    for p in photos:
        try:
            load_image(p)
        except InputError as exc:
            raise InputError(f"--references: {p.name} cannot be used: {_without_path(str(exc), p)}") from None
        out.append(Reference(name=p.stem, path=str(p.resolve())))
    return out


def _without_path(message: str, path: Path) -> str:
    """``"/a/b/x.jpg: the file is empty"`` -> ``"the file is empty"`` (the caller names the file)."""
    for prefix in (f"{path}: ", f"{path.name}: "):
        if message.startswith(prefix):
            return message[len(prefix):]
    return message


# ---------------------------------------------------------------------------- prompts
def load_prompts(path: str | Path) -> list[Prompt]:
    p = Path(path).expanduser()
    try:
        with open(p, "rb") as fh:
            data = fh.read(MAX_PROMPTS_CHARS + 1)
    except IsADirectoryError:
        raise InputError(f"--prompts: {path} is a folder; give a text file with one prompt per line") from None
    except OSError as exc:
        raise InputError(f"--prompts: cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > MAX_PROMPTS_CHARS:
        raise InputError(f"--prompts: {path} is larger than {MAX_PROMPTS_CHARS} bytes")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"--prompts: {path} is not UTF-8 text (one prompt per line)") from None
    prompts = []
    for n, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line and not line.startswith("#"):
            prompts.append(Prompt(index=len(prompts), line=n, text=line))
    if not prompts:
        raise InputError(f"--prompts: {path} has no prompts (one per line; blank and # lines are skipped)")
    return prompts


# ---------------------------------------------------------------------------- conditions
def _state(obj: Any, where: str) -> tuple[dict, tuple[str, ...]]:
    """Validate one head state (clamped values become notes); InputError names ``where``."""
    from caphuman.controls.state import HeadState

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            state = HeadState.from_dict(obj)
        except InputError as exc:
            raise InputError(f"--conditions: {where}: {exc}") from None
    notes = tuple(f"{where}: {w.message}" for w in caught if issubclass(w.category, UserWarning))
    return state.to_dict(), notes


def _read_json(p: Path, label: str) -> Any:
    from caphuman.controls.state import read_state_text

    try:
        text = read_state_text(p, label)
    except InputError as exc:
        raise InputError(f"--conditions: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"--conditions: {label} is not valid JSON: {exc.msg} (line {exc.lineno}, "
                         f"column {exc.colno})") from None
    except (RecursionError, ValueError):
        raise InputError(f"--conditions: {label} is not valid JSON") from None


def load_conditions(path: str | Path) -> list[Condition]:
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"--conditions: no such file or folder {path}")
    out: list[Condition] = []
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and f.suffix.lower() == ".json"
                       and not f.name.startswith("."))
        if not files:
            raise InputError(f"--conditions: no .json head states in {path}")
        for f in files:
            state, notes = _state(_read_json(f, f.name), f.name)
            out.append(Condition(name=f.stem, state=state, source=f.name, notes=notes))
        return _unique(out)
    data = _read_json(p, p.name)
    items = data if isinstance(data, list) else [data]
    if not items:
        raise InputError(f"--conditions: {p.name} is an empty list; give at least one head state")
    for i, item in enumerate(items):
        where = f"{p.name} item {i}" if isinstance(data, list) else p.name
        name = f"c{i:02d}" if isinstance(data, list) else p.stem
        if isinstance(item, dict) and "name" in item:
            item = dict(item)
            given = item.pop("name")
            if not isinstance(given, str) or not given.strip():
                raise InputError(f'--conditions: {where}: "name" must be text')
            name = given.strip()
        state, notes = _state(item, where)
        out.append(Condition(name=name, state=state, source=where, notes=notes))
    return _unique(out)


def _unique(conds: list[Condition]) -> list[Condition]:
    seen: dict[str, str] = {}
    for c in conds:
        key = slug(c.name)
        if key in seen:
            raise InputError(f"--conditions: {c.source} and {seen[key]} have the same name {c.name!r}; "
                             "give each condition its own name")
        seen[key] = c.source
    return conds


# ---------------------------------------------------------------------------- seeds
def parse_seeds(text: str) -> list[int]:
    from caphuman.validation import MAX_SEED

    seeds = []
    for tok in str(text).split(","):
        tok = tok.strip()
        if not tok:
            continue
        if not re.fullmatch(r"\d+", tok) or int(tok) > MAX_SEED:
            raise InputError(f"--seeds: {tok!r} is not a seed (whole numbers 0..{MAX_SEED}, e.g. 1,2,3)")
        if int(tok) in seeds:
            raise InputError(f"--seeds: {tok} is given twice")
        seeds.append(int(tok))
    if not seeds:
        raise InputError("--seeds: give at least one seed, e.g. 1,2,3")
    return seeds


# ---------------------------------------------------------------------------- the plan
def slug(name: str, limit: int = 24) -> str:
    """A file-name-safe short form of a name (letters, digits, ``_``, ``-``); a hash when nothing is left."""
    s = re.sub(r"[^A-Za-z0-9_-]+", "_", name).strip("_-")[:limit]
    return s or "x" + hashlib.sha256(name.encode()).hexdigest()[:8]


def job_id(ref: Reference, prompt: Prompt, cond: Condition, seed: int) -> str:
    """``<photo>.p<NN>-<hash>.<condition>.s<seed>``: readable, and stable for the same material (the prompt's
    hash keeps an edited prompt from taking over the old one's folder)."""
    ph = hashlib.sha256(prompt.text.encode()).hexdigest()[:4]
    return f"{slug(ref.name)}.p{prompt.index:02d}-{ph}.{slug(cond.name)}.s{seed}"


@dataclass(frozen=True)
class PlannedJob:
    """One job of the plan and what it stands for."""

    job: dict
    reference: Reference
    prompt: Prompt
    condition: Condition
    seed: int


def plan_jobs(refs: list[Reference], prompts: list[Prompt], conds: list[Condition], seeds: list[int],
              settings: dict, condition_modes: str, num_images: int = 1) -> list[PlannedJob]:
    """Batch job dicts for refs x prompts x conditions x seeds (in that nesting order). ``settings``:
    generation fields of a job (steps, guidance, resolution, ...)."""
    refs_by_slug: dict[str, str] = {}
    for r in refs:
        other = refs_by_slug.setdefault(slug(r.name), r.name)
        if other != r.name:
            raise InputError(f"--references: {other!r} and {r.name!r} give the same short name {slug(r.name)!r}; "
                             "rename one of them")
    out = []
    for r in refs:
        for p in prompts:
            for c in conds:
                for s in seeds:
                    job = {"id": job_id(r, p, c, s), "reference": r.path, "prompt": p.text, "seed": s,
                           "condition": c.state, "condition_modes": condition_modes, "num_images": num_images,
                           **settings}
                    out.append(PlannedJob(job, r, p, c, s))
    return out


def write_plan(path: Path, planned: list[PlannedJob]) -> Path:
    """The plan as a batch jobs file (``python -m caphuman batch`` runs it as well)."""
    from caphuman.batch.manifest import atomic_write

    text = "".join(json.dumps(pj.job, sort_keys=True) + "\n" for pj in planned)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        atomic_write(path, text.encode("utf-8"))
    return path


__all__ = ["Condition", "PHOTO_SUFFIXES", "PlannedJob", "Prompt", "Reference", "job_id", "load_conditions",
           "load_prompts", "load_references", "parse_seeds", "plan_jobs", "slug", "write_plan"]
