"""Batch jobs: one JSON object per line of a ``.jsonl`` file, validated before anything runs.

A job (only ``reference`` and ``prompt`` are required)::

    {"id": "ada-yaw", "reference": "photos/ada.jpg", "prompt": "a photo of a person in a park",
     "negative_prompt": "blurry", "head": {"pose.yaw": 20, "smile": 0.5},
     "sweep": "pose.yaw=-60:60:7", "seed": 7, "steps": 20, "guidance": 7, "resolution": 512}

Fields:

* ``id``: names the job's output folder (letters, digits, ``.``, ``_``, ``-``). Default: ``j`` + a hash
  of the job's content, so it survives reordering the file.
* ``reference``: the reference photo (relative paths are relative to the jobs file). The head is fitted
  to it and drawn in its frame, as ``generate --reference`` does. ``pose_reference`` + ``modes``: as
  ``generate --pose-reference/--modes``.
* ``head``: head controls applied on top of the fitted head, by dotted path (``pose.yaw``,
  ``expression_controls.smile``, ``lighting.azimuth``, ``placement.scale``, ``expression.3``), short name
  (``yaw``, ``smile``) or nested (``{"pose": {"yaw": 20}}``); out-of-range values are refused.
  ``head_state``: a whole saved head state (an object, or a JSON file as written by ``preview --save-params``
  / the studio's preset button) instead of the fitted one, as ``generate --params`` does.
  ``condition``: a head state (an object or a JSON file, validated like ``head_state``) whose fields
  named by ``condition_modes`` (default ``pose,expression,lighting``; the words of ``--modes``:
  position, pose, expression, lighting, all) replace the fitted ones, as a pose photo's do -- shape
  and albedo stay the reference's (the ``evaluate`` command's head conditions). Applied after
  ``head_state``, before ``head``.
* ``sweep``: one axis ``"pose.yaw=-60:60:7"``, several (a list: a grid), or objects
  ``{"control": ..., "from": ..., "to": ..., "steps": ...}`` (see :mod:`caphuman.batch.sweep`). Every cell
  uses the job's seed.
* ``seed``: omitted or -1: derived from the job's content (recorded, so a resumed job keeps it).
  ``num_images`` (1-8, not with a sweep): images ``seed``, ``seed + 1``, ...
* generation settings, checked by the studio's own rules
  (:meth:`caphuman.studio.generation.GenerationParams.validated`): ``negative_prompt``, ``steps``,
  ``guidance``, ``strength``, ``tau``, ``resolution`` (or ``size``), ``scheduler`` (ddim, dpmpp, lcm),
  ``lora`` + ``lora_scale``; ``preset`` (``original`` / ``fast``) fills scheduler, steps and guidance
  that are not given, as ``generate --preset`` does.

Blank lines and lines starting with ``#`` are skipped. Lines end at ``\n`` only (a U+2028 inside a
prompt is text, as JSON Lines says). The file may hold at most :data:`MAX_JOBS_FILE_BYTES`; a line may
nest objects at most :data:`MAX_NESTING` deep; a reference photo may be at most
:data:`MAX_PHOTO_BYTES` (checked before it is read). Ids that would collide with the run's own files
(``manifest*``) or that some systems reserve (``con``, ``nul``, ``com1`` ...) are refused.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caphuman.batch.sweep import SweepSpec, check_control_value, control_path, label, slug
from caphuman.controls.state import HeadState
from caphuman.errors import CapHumanError, InputError

FIELDS = ("id", "reference", "pose_reference", "modes", "prompt", "negative_prompt", "head", "head_state", "sweep",
          "seed", "num_images", "steps", "guidance", "strength", "tau", "resolution", "size", "scheduler", "preset",
          "lora", "lora_scale", "condition", "condition_modes")
#: What a ``condition`` replaces unless ``condition_modes`` says otherwise.
CONDITION_MODES = "pose,expression,lighting"
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
#: Names the run itself writes in the output folder (manifest.jsonl, manifest.rank3.jsonl ...), and
#: device names Windows reserves in any folder (with any extension); compared case-insensitively.
_RESERVED_ID = re.compile(r"(manifest(\..*)?|(con|prn|aux|nul|com[0-9]|lpt[0-9])(\..*)?)", re.IGNORECASE)
#: Bounds on what a jobs file may make the parser do (read, nest, hash).
MAX_JOBS_FILE_BYTES = 64 * 1024 * 1024
MAX_NESTING = 64
MAX_PHOTO_BYTES = 256 * 1024 * 1024
_HEAD_GROUPS = ("pose", "lighting", "placement", "expression_controls")


@dataclass(frozen=True)
class Cell:
    """One image of a job: ``index`` in the job, its seed, the sweep values (empty without a sweep),
    and ``stem``, the file name without extension."""

    index: int
    seed: int
    values: dict[str, float]
    stem: str

    @property
    def label(self) -> str:
        return label(self.values) if self.values else f"seed {self.seed}"


@dataclass(frozen=True)
class Job:
    """A validated job. ``params`` is the studio's validated GenerationParams (seed resolved);
    ``head``: {dotted path: value} on top of the base state; ``head_state``: a whole base state (dict)
    or None (the reference's fitted state); ``fingerprint``: hash of everything that decides the pixels
    (a manifest record or sidecar counts only while it matches)."""

    id: str
    line: int
    reference: str
    reference_sha: str
    prompt: str
    params: Any
    head: dict[str, float] = field(default_factory=dict)
    head_state: dict | None = None
    sweep: SweepSpec | None = None
    pose_reference: str | None = None
    modes: str = "position,pose"
    fingerprint: str = ""
    condition: dict | None = None
    condition_modes: str = CONDITION_MODES

    @property
    def negative_prompt(self) -> str:
        return self.params.negative_prompt

    @property
    def seed(self) -> int:
        return self.params.seed

    @property
    def resolution(self) -> int:
        return self.params.resolution

    def cells(self) -> list[Cell]:
        from caphuman.studio.generation import MAX_SEED

        if self.sweep is not None:
            return [Cell(i, self.seed, v, f"{i:03d}_{slug(v)}") for i, v in enumerate(self.sweep.cells())]
        return [Cell(i, (self.seed + i) % (MAX_SEED + 1), {}, f"{i:03d}") for i in range(self.params.num_images)]

    def settings_key(self) -> tuple:
        """Jobs with the same key can share one pipeline call (prompts, hints, identities and seeds may differ)."""
        p = self.params
        return (p.resolution, p.steps, p.scheduler, p.guidance, p.strength, p.tau, p.lora, p.lora_scale)

    def base_state(self, fitted: HeadState) -> HeadState:
        """The state every cell starts from: ``head_state`` or the fitted state, with ``head`` applied."""
        from caphuman.batch.sweep import apply_values

        base = HeadState.from_dict(self.head_state) if self.head_state is not None else fitted
        if self.condition is not None:
            from caphuman.face.transfer import transfer

            base = transfer(base, HeadState.from_dict(self.condition), self.condition_modes).validated()
        return apply_values(base, self.head)

    def to_dict(self) -> dict:
        """JSON-friendly description (sidecars, manifest)."""
        p = dataclasses.asdict(self.params)
        p.pop("model", None)
        return {"id": self.id, "line": self.line, "reference": self.reference, "pose_reference": self.pose_reference,
                "modes": self.modes, "prompt": self.prompt, "head": dict(self.head), "head_state": self.head_state,
                "sweep": None if self.sweep is None else self.sweep.to_dict(), "condition": self.condition,
                "condition_modes": self.condition_modes if self.condition is not None else None, **p}


@dataclass
class LineError:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class JobFile:
    """Parsed file: valid jobs (file order), errors and warnings by line, and a hash of the valid jobs
    (every worker of a multi-process run must see the same)."""

    path: str
    jobs: list[Job]
    errors: list[LineError]
    warnings: list[LineError]

    @property
    def digest(self) -> str:
        return hashlib.sha256("\n".join(j.fingerprint + j.id for j in self.jobs).encode()).hexdigest()[:16]

    @property
    def num_images(self) -> int:
        return sum(len(j.cells()) for j in self.jobs)


# ---------------------------------------------------------------------------- parsing
def parse_jobs(path: str | Path, salt: str = "") -> JobFile:
    """Read and validate every line of ``path``. ``salt``: run settings that decide the pixels too
    (weights, dtype, head model), mixed into each job's fingerprint."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:  # bounded: a jobs file that is /dev/zero or a huge sparse file ends here
            raw_bytes = fh.read(MAX_JOBS_FILE_BYTES + 1)
        text = raw_bytes.decode("utf-8")
    except OSError as exc:
        raise InputError(f"cannot read the jobs file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise InputError(f"the jobs file {path} is not UTF-8 text") from None
    if len(raw_bytes) > MAX_JOBS_FILE_BYTES:
        raise InputError(f"the jobs file {path} is larger than {MAX_JOBS_FILE_BYTES // 2 ** 20} MiB; split it")
    del raw_bytes
    base = path.resolve().parent
    jobs: list[Job] = []
    errors: list[LineError] = []
    notes: list[LineError] = []
    ids: dict[str, int] = {}
    photos: dict[str, str] = {}
    for n, raw in enumerate(text.split("\n"), start=1):  # JSON Lines: "\n" only, not every Unicode break
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        try:
            data = _parse_line(raw)
        except InputError as exc:
            errors.append(LineError(n, str(exc)))
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                job = job_from_dict(data, n, base, salt, photos)
            notes += [LineError(n, str(w.message)) for w in caught if issubclass(w.category, UserWarning)]
        except CapHumanError as exc:
            errors.append(LineError(n, str(exc)))
            continue
        if job.id in ids:
            same = "the same job as" if job.id.startswith("j") and "id" not in data else "the same id as"
            errors.append(LineError(n, f"{same} line {ids[job.id]} ({job.id!r}); give each job its own \"id\""))
            continue
        ids[job.id] = n
        jobs.append(job)
    if not jobs and not errors:
        errors.append(LineError(0, "no jobs in the file"))
    return JobFile(str(path), jobs, errors, notes)


def _depth_ok(raw: str) -> bool:
    """Whether brackets outside strings nest at most MAX_NESTING deep (checked before json.loads,
    whose recursion a 100k-deep line would exhaust)."""
    depth, in_string, escaped = 0, False, False
    for ch in raw:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > MAX_NESTING:
                return False
        elif ch in "]}":
            depth -= 1
    return True


def _parse_line(raw: str) -> Any:
    """One JSON value, or an InputError saying what is wrong with the line."""
    if not _depth_ok(raw):
        raise InputError(f"nested more than {MAX_NESTING} levels deep; a job is a flat object")
    try:
        return json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:  # e.g. an integer beyond Python's 4300-digit conversion limit
        detail = "a number with more than 4300 digits" if "digits" in str(exc) else str(exc)[:120]
        raise InputError(f"not a usable JSON value: {detail}") from None
    except RecursionError:
        raise InputError(f"nested more than {MAX_NESTING} levels deep; a job is a flat object") from None


def job_from_dict(data: Any, line: int = 0, base_dir: str | Path = ".", salt: str = "",
                  photos: dict[str, str] | None = None) -> Job:
    """Validate one job object (see the module docstring); raises InputError (or MissingWeightsError for
    a LoRA / the fast preset's LoRA that is not installed)."""
    from caphuman.studio.generation import MAX_SEED, GenerationParams

    if not isinstance(data, dict):
        raise InputError(f"a job must be a JSON object, got {type(data).__name__}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InputError(f"unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                         f"known: {', '.join(FIELDS)}")
    if "size" in data and "resolution" in data:
        raise InputError('give "resolution" or "size", not both')
    photos = {} if photos is None else photos
    base_dir = Path(base_dir)
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError('"prompt" is required (text)')
    reference = _photo(data.get("reference"), "reference", base_dir, photos, required=True)
    pose_reference = _photo(data.get("pose_reference"), "pose_reference", base_dir, photos)
    modes = data.get("modes", "position,pose")
    if pose_reference is not None:
        from caphuman.face.transfer import parse_modes

        parse_modes(modes)
    head = parse_head(data.get("head"))
    head_state = _head_state(data.get("head_state"), base_dir)
    condition = _head_state(data.get("condition"), base_dir, "condition")
    condition_modes = data.get("condition_modes", CONDITION_MODES)
    if condition is None and "condition_modes" in data:
        raise InputError('"condition_modes" needs a "condition"')
    if condition is not None:
        from caphuman.face.transfer import parse_modes

        if not isinstance(condition_modes, (str, list)) or not parse_modes(condition_modes):
            raise InputError('"condition_modes" must name at least one of position, pose, expression, lighting '
                             f"(or all), got {condition_modes!r}")
        condition_modes = ",".join(parse_modes(condition_modes))
    sweep = None if data.get("sweep") in (None, [], "") else SweepSpec.from_obj(data["sweep"])

    num_images = data.get("num_images", 1)
    if sweep is not None and num_images != 1:
        raise InputError("num_images must be 1 with a sweep (every cell is one image with the job's seed)")
    from caphuman.diffusion import presets

    preset = data.get("preset", "original")
    if not isinstance(preset, str):
        raise InputError(f"preset must be one of {', '.join(presets.PRESETS)}")
    try:
        scheduler, steps, guidance = presets.resolve(preset, data.get("scheduler"), data.get("steps"),
                                                     data.get("guidance"))
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"steps must be a whole number, got {data.get('steps')!r}") from None
    settings = dict(prompt=prompt, negative_prompt=data.get("negative_prompt", ""), steps=steps, guidance=guidance,
                    strength=data.get("strength", 1.0), tau=data.get("tau", 0), num_images=num_images,
                    resolution=data.get("resolution", data.get("size", 512)), scheduler=scheduler,
                    lora=data.get("lora") or "", lora_scale=data.get("lora_scale", 1.0))
    for key in ("negative_prompt", "lora"):
        if not isinstance(settings[key], str):
            raise InputError(f"{key} must be text")
    seed = data.get("seed", -1)
    checked = GenerationParams(seed=0, **settings).validated()  # everything but the seed
    content = {"reference": reference[1], "pose_reference": pose_reference and pose_reference[1],
               "modes": modes if pose_reference else None, "head": head, "head_state": head_state,
               "sweep": None if sweep is None else sweep.to_dict(),
               **{k: v for k, v in dataclasses.asdict(checked).items() if k not in ("seed", "model")}}
    if condition is not None:  # only then: the fingerprints of jobs without one stay what they were
        content["condition"], content["condition_modes"] = condition, condition_modes
    content_hash = _hash(content)
    if seed in (-1, None):
        seed = int(content_hash[:8], 16) % (MAX_SEED + 1)
    params = GenerationParams(seed=seed, **settings).validated()
    job_id = data.get("id")
    if job_id is None:
        job_id = "j" + content_hash[:11]
    elif not isinstance(job_id, str) or not _ID.fullmatch(job_id):
        raise InputError(f"id {str(job_id)[:120]!r}: use 1-100 letters, digits, '.', '_' or '-' (it names the "
                         "output folder)")
    elif _RESERVED_ID.fullmatch(job_id):
        raise InputError(f"id {job_id!r} is reserved (the run's own manifest files, or a device name some systems "
                         "reserve); choose another")
    fingerprint = _hash({**content, "seed": params.seed, "run": salt})
    return Job(id=job_id, line=line, reference=reference[0], reference_sha=reference[1], prompt=params.prompt,
               params=params, head=head, head_state=head_state, sweep=sweep,
               pose_reference=None if pose_reference is None else pose_reference[0],
               modes=str(modes), fingerprint=fingerprint, condition=condition,
               condition_modes=condition_modes if condition is not None else CONDITION_MODES)


def parse_head(obj: Any) -> dict[str, float]:
    """Head overrides -> {canonical dotted path: value}, values range-checked (refused, not clamped)."""
    if obj in (None, {}):
        return {}
    if not isinstance(obj, dict):
        raise InputError('"head" must be an object, e.g. {"pose.yaw": 20, "smile": 0.5}')
    flat: dict[str, Any] = {}
    for key, value in obj.items():
        if key in _HEAD_GROUPS and isinstance(value, dict):
            for leaf, v in value.items():
                flat[f"{key}.{leaf}"] = v
        elif key == "expression" and isinstance(value, list):
            for k, v in enumerate(value):
                flat[f"expression.{k}"] = v
        else:
            flat[key] = value
    out: dict[str, float] = {}
    for key, value in flat.items():
        path = control_path(key)
        if path in out:
            raise InputError(f"head: {path} given twice")
        if isinstance(value, bool):
            raise InputError(f"head: {key} must be a number, got {value!r}")
        out[path] = check_control_value(path, value)
    return out


def _head_state(obj: Any, base_dir: Path, name: str = "head_state") -> dict | None:
    if obj is None:
        return None
    if isinstance(obj, str):
        path = (base_dir / obj).resolve()
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"{name}: cannot read {obj}: {getattr(exc, 'strerror', None) or exc}") from None
        state = HeadState.from_json(text)
    else:
        state = HeadState.from_dict(obj)
    return state.to_dict()


def _photo(value: Any, name: str, base_dir: Path, memo: dict[str, str], required: bool = False):
    """(absolute path, sha256 of the bytes) of an image file, or None."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InputError(f'"{name}" is required (a photo path)' if required else f"{name} must be a photo path")
    path = Path(value).expanduser()
    path = (path if path.is_absolute() else base_dir / path).resolve()
    key = str(path)
    if key not in memo:
        if not path.is_file():
            raise InputError(f"{name}: no such file {value}")
        try:
            size = path.stat().st_size
            if size > MAX_PHOTO_BYTES:
                raise InputError(f"{name}: {value} is {size / 2 ** 20:,.0f} MiB; a reference photo may be at most "
                                 f"{MAX_PHOTO_BYTES // 2 ** 20} MiB")
            with open(path, "rb") as fh:
                data = fh.read(MAX_PHOTO_BYTES + 1)
            if len(data) > MAX_PHOTO_BYTES:
                raise InputError(f"{name}: {value} is larger than {MAX_PHOTO_BYTES // 2 ** 20} MiB")
        except OSError as exc:
            raise InputError(f"{name}: cannot read {value}: {exc.strerror}") from None
        import io

        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(io.BytesIO(data)) as im:
                im.size  # header only
        except (UnidentifiedImageError, OSError):
            raise InputError(f"{name}: {value} is not an image PIL can read") from None
        memo[key] = hashlib.sha256(data).hexdigest()
    return key, memo[key]


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


__all__ = ["CONDITION_MODES", "Cell", "FIELDS", "Job", "JobFile", "LineError", "job_from_dict", "parse_head", "parse_jobs"]
