"""The ``download`` targets: which registry files each fetches, a dry-run plan, and the converted
folder generation looks for.

Fetching itself (resume, atomic placement, verification) is :mod:`caphuman.weights.fetch`.
This module does not convert: "fetch, then convert", for the ``download`` command and the studio's
start-up alike, is :func:`caphuman.weights.provision.fetch_and_convert`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from caphuman.errors import CapHumanError, MissingWeightsError
from caphuman.weights.fetch import Log, fetch, is_offline, local_ok, mirrored, read_record
from caphuman.weights.registry import REGISTRY, WeightFile, checkpoints_root

#: What each ``download`` target fetches (registry keys). ``all`` is everything public that
#: generation and the best photo analysis use; licence-gated files are listed by the plan only.
GROUPS: dict[str, tuple[str, ...]] = {
    "caphuman": ("caphuman",),
    "backbone": ("backbone", "vae"),
    "encoders": ("clip", "face_parsing", "facenet"),
    "analysis": ("insightface",),
    "deca-data": ("flame_landmarks", "flame_uv"),  # with FLAME installed, nothing else is manual
    "fast": ("lcm_lora",),  # LCM-LoRA of the fast preset
}
GROUPS["all"] = tuple(dict.fromkeys(k for g in list(GROUPS) for k in GROUPS[g]))
#: Single registry keys are targets too (``download facenet``).
TARGETS = tuple(GROUPS) + tuple(k for k, w in REGISTRY.items() if w.downloadable and k not in GROUPS)
CONVERTED_DIRNAME = "caphuman-diffusers"


def target_keys(target: str) -> tuple[str, ...]:
    """Registry keys of a group name or of a single downloadable key."""
    if target in GROUPS:
        return GROUPS[target]
    if target in REGISTRY and REGISTRY[target].downloadable:
        return (target,)
    raise CapHumanError(f"unknown download target {target!r}; choose one of {', '.join(TARGETS)}")


@dataclass(frozen=True)
class PlanRow:
    """One line of ``download --dry-run``: what would happen to one file, without the network."""

    key: str
    path: Path
    action: str  # "present" | "download" | "manual"
    source: str
    size: str
    checksum: str
    licence: str
    why: str = ""

    def format(self) -> str:
        head = f"{self.key:16s} {self.action:8s} {self.path}"
        lines = [head, f"    from:     {self.source}", f"    size:     {self.size}",
                 f"    checksum: {self.checksum}", f"    licence:  {self.licence}"]
        if self.why:
            lines.append(f"    note:     {self.why}")
        return "\n".join(lines)


def _size_text(w: WeightFile) -> str:
    if w.size_bytes:
        return f"{w.size_bytes:,} bytes"
    return "unknown until downloaded" if w.downloadable else "-"


def _checksum_text(w: WeightFile, recorded: dict) -> str:
    if w.sha256:
        return f"sha256 {w.sha256}"
    if w.md5:
        return f"md5 {w.md5}"
    parts = []
    if w.hub_repo and w.hub_filename:
        parts.append("the Hub's own SHA-256 (ETag)")
    elif w.hub_repo:
        parts.append("per-file Hub SHA-256, checked by huggingface_hub")
    if w.check == "torch_state_dict":
        parts.append("must load as a state dict")
    elif w.check == "onnx_pack":
        parts.append(f"must hold {', '.join(w.members)}")
    text = "none published; " + ("; ".join(parts) if parts else "presence only")
    if recorded.get("sha256"):
        text += f" (recorded sha256 {recorded['sha256']})"
    return text


def plan(target: str = "all", root: str | os.PathLike | None = None) -> list[PlanRow]:
    """What ``download TARGET`` would do, file by file, touching no network and hashing nothing
    ("present": on disk; ``download`` re-checks checksums, ``doctor --verify`` too). For ``all``
    the licence-gated files are listed too, as ``manual``."""
    root = Path(root) if root else checkpoints_root()
    keys = list(target_keys(target))
    if target == "all":
        keys += [k for k, w in REGISTRY.items() if k not in keys]
    record = read_record(root)
    rows = []
    for key in keys:
        w = REGISTRY[key]
        path = root / w.path
        if not w.downloadable:
            action, why = "manual", ("licence-gated: sign in and download it yourself from "
                                     f"{w.manual_url}" if w.gated else f"no public source; get it from {w.manual_url}")
            source = w.manual_url or "-"
            if path.exists():
                action, why = "present", "supplied by you (" + why.split(":")[0] + ")"
        else:
            action = "present" if local_ok(w, path, verify=False) else "download"  # fast: no hashing
            source = mirrored(w.url) if (w.url and not w.hub_repo) else w.source
            why = w.notice or ""
        rows.append(PlanRow(key, path, action, source, _size_text(w), _checksum_text(w, record.get(key, {})),
                            w.licence, why))
    return rows


def download(target: str = "all", offline: bool = False, root: str | os.PathLike | None = None,
             log: Log = print) -> list[Path]:
    """Fetch every file of ``target`` (a group of :data:`GROUPS` or one registry key); returns their
    paths. Stops at the first failure with a :class:`CapHumanError` naming the file and the fix."""
    root = Path(root) if root else checkpoints_root()
    return [fetch(REGISTRY[key], root, offline=is_offline(offline), log=log) for key in target_keys(target)]


def find_converted_weights(root: str | os.PathLike | None = None) -> Path:
    """The converted folder: ``$CAPHUMAN_WEIGHTS``, else ``checkpoints/caphuman-diffusers`` (present or not)."""
    env = os.environ.get("CAPHUMAN_WEIGHTS")
    if env:
        return Path(env).expanduser()
    return (Path(root) if root else checkpoints_root()) / CONVERTED_DIRNAME


#: Optional Hub repo of an already converted CapHuman pipeline (looked up in the Hub cache).
WEIGHTS_REPO_ENV = "CAPHUMAN_WEIGHTS_REPO"


def _is_repo_id(spec: str) -> bool:
    parts = spec.split("/")
    return len(parts) == 2 and all(parts) and not Path(spec).expanduser().exists() and not spec.startswith((".", "~"))


def _hub_snapshot(repo_id: str, local_only: bool) -> Path | None:
    """Local snapshot folder of a converted pipeline repo (Hub cache first), or None."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    try:
        path = Path(huggingface_hub.snapshot_download(repo_id, local_files_only=True))
    except (hf_errors.LocalEntryNotFoundError, OSError, ValueError):
        path = None
    if path is None and not local_only:
        try:
            path = Path(huggingface_hub.snapshot_download(repo_id))
        except (hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else "no details"
            raise CapHumanError(f"{repo_id}: could not download the converted pipeline ({type(exc).__name__}: "
                                f"{first}); check the network or the repo id") from None
    return path if path is not None and (path / "model_index.json").is_file() else None


def resolve_weights(spec: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """Where the converted CapHuman pipeline is: ``spec`` (a folder, or a Hub repo id, taken from
    the Hub cache or downloaded), else ``$CAPHUMAN_WEIGHTS``, else ``checkpoints/caphuman-diffusers``,
    else ``$CAPHUMAN_WEIGHTS_REPO`` found in the Hub cache. Returns the checkpoints path (absent)
    when nothing is found, so callers can say where weights are expected."""
    offline = is_offline()
    if spec:
        spec = str(spec)
        if _is_repo_id(spec):
            found = _hub_snapshot(spec, local_only=offline)
            if found is None:
                raise MissingWeightsError(f"{spec}: no converted CapHuman pipeline (model_index.json) "
                                          "in that Hub repo or the local Hub cache")
            return found
        return Path(spec).expanduser()
    local = find_converted_weights(root)
    if (local / "model_index.json").is_file() or os.environ.get("CAPHUMAN_WEIGHTS"):
        return local
    repo = os.environ.get(WEIGHTS_REPO_ENV)
    if repo:
        found = _hub_snapshot(repo, local_only=True)
        if found is not None:
            return found
    return local
