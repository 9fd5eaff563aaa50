"""Fetch the public weights of the registry with huggingface_hub, verify them, convert them.

Files land under ``checkpoints/`` at their registry paths (downloads resume; a file already present
with the right checksum is not fetched again). Licence-gated or non-Hub files are listed with
their manual source instead. The converted diffusers folder is ``checkpoints/caphuman-diffusers``.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from caphuman.errors import CapHumanError, MissingWeightsError
from caphuman.weights.registry import REGISTRY, WeightFile, checkpoints_root, local_path

#: What each ``download`` target fetches (registry keys).
GROUPS: dict[str, tuple[str, ...]] = {
    "caphuman": ("caphuman",),
    "backbone": ("backbone", "vae"),
    "encoders": ("clip", "face_parsing", "facenet"),
    "fast": ("lcm_lora",),  # LCM-LoRA of the fast preset
}
GROUPS["all"] = tuple(dict.fromkeys(k for g in ("caphuman", "backbone", "encoders", "fast") for k in GROUPS[g]))
CONVERTED_DIRNAME = "caphuman-diffusers"
#: Files of a transformers CLIP repo that the pipeline needs (weights as safetensors only).
CLIP_PATTERNS = ["*.json", "*.txt", "model.safetensors"]


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
            raise _network_error(WeightFile(key=repo_id, path="", description="", licence="", needed_for="",
                                            hub_repo=repo_id, hub_filename=None), exc, False) from None
    return path if path is not None and (path / "model_index.json").is_file() else None


def resolve_weights(spec: str | os.PathLike | None = None, root: str | os.PathLike | None = None) -> Path:
    """Where the converted CapHuman pipeline is: ``spec`` (a folder, or a Hub repo id, taken from
    the Hub cache or downloaded), else ``$CAPHUMAN_WEIGHTS``, else ``checkpoints/caphuman-diffusers``,
    else ``$CAPHUMAN_WEIGHTS_REPO`` found in the Hub cache. Returns the checkpoints path (absent)
    when nothing is found, so callers can say where weights are expected."""
    offline = bool(os.environ.get("HF_HUB_OFFLINE"))
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


def file_checksum(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def verify(entry: WeightFile, path: Path) -> None:
    """Raise ``CapHumanError`` if ``path`` does not match the registry's sha256/md5 (when known)."""
    for algo in ("sha256", "md5"):
        want = getattr(entry, algo)
        if want:
            got = file_checksum(path, algo)
            if got != want:
                raise CapHumanError(f"{path} fails its {algo} check ({got} != {want}); delete it and download again")
            return


def _network_error(entry: WeightFile, exc: Exception, offline: bool) -> CapHumanError:
    where = f"{entry.hub_repo}/{entry.hub_filename or ''}".rstrip("/")
    if offline:
        return MissingWeightsError(f"{entry.key}: not available offline (no local copy of {where}); "
                                   "run without --offline when the network is up")
    return CapHumanError(f"{entry.key}: could not download {where} ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else 'no details'}); check the network "
                         "or use --offline with files already in checkpoints/")


def fetch(entry: WeightFile, root: Path, offline: bool = False, log=print) -> Path | None:
    """Download one registry entry into ``root``; None (with a message) if it is not on the Hub."""
    import huggingface_hub
    from huggingface_hub import errors as hf_errors

    target = root / entry.path
    if not entry.hub_repo:
        if target.exists():
            log(f"{entry.key}: present at {target}")
        else:
            log(f"{entry.key}: not auto-downloadable; get it from {entry.manual_url} and put it at {target} "
                f"(licence: {entry.licence})")
        return target if target.exists() else None
    log(f"{entry.key}: {entry.description} -- licence: {entry.licence}")
    failures = (hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError, OSError, ConnectionError,
                TimeoutError, ValueError)
    try:
        if entry.hub_filename is None:  # a whole repo (CLIP)
            huggingface_hub.snapshot_download(entry.hub_repo, local_dir=target, allow_patterns=CLIP_PATTERNS,
                                              local_files_only=offline)
            return target
        if target.is_file() and (entry.md5 or entry.sha256):
            try:
                verify(entry, target)
                log(f"{entry.key}: already present and verified ({target})")
                return target
            except CapHumanError:
                log(f"{entry.key}: local copy fails its checksum, downloading again")
        downloaded = Path(huggingface_hub.hf_hub_download(
            entry.hub_repo, entry.hub_filename, local_dir=target.parent, local_files_only=offline))
    except failures as exc:
        raise _network_error(entry, exc, offline) from None
    if downloaded.resolve() != target.resolve():
        shutil.move(str(downloaded), str(target))
    verify(entry, target)
    log(f"{entry.key}: ok ({target})")
    return target


def download(target: str = "all", offline: bool = False, convert: bool = True, root: Path | None = None,
             log=print) -> Path | None:
    """Fetch the files of ``target`` (caphuman | backbone | encoders | fast | all), then convert when possible."""
    if target not in GROUPS:
        raise CapHumanError(f"unknown download target {target!r}; choose one of {', '.join(GROUPS)}")
    root = Path(root) if root else checkpoints_root()
    for key in GROUPS[target]:
        fetch(REGISTRY[key], root, offline=offline, log=log)
    if not {"caphuman", "backbone", "vae", "clip"} & set(GROUPS[target]):
        return None  # nothing the conversion reads was fetched (e.g. `download fast`)
    ckpt, backbone = local_path("caphuman", root), local_path("backbone", root)
    if not convert or not (ckpt.is_file() and backbone.is_file()):
        if convert:
            log("conversion skipped: needs both the CapHuman checkpoint and the backbone "
                "(`python -m caphuman download all`)")
        return None
    from caphuman.diffusion.convert import convert_caphuman

    vae, clip = local_path("vae", root), local_path("clip", root)
    out = root / CONVERTED_DIRNAME
    convert_caphuman(ckpt, out, backbone=backbone, vae=vae if vae.is_file() else None,
                     clip=clip if clip.exists() else None, log=log)
    return out
