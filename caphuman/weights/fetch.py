"""Get one registry file onto disk: resumable, atomic, verified.

Three kinds of source (:class:`~caphuman.weights.registry.WeightFile`):

* one Hub file: ``huggingface_hub.hf_hub_download`` into a staging folder (it resumes and writes
  atomically there), verified, then moved to its final path;
* a whole Hub repo (CLIP): ``huggingface_hub.snapshot_download`` of the files the pipeline reads;
* a plain URL: ``huggingface_hub``'s streaming ``http_get`` (progress bar, retries, ``Range``
  resume) appended to ``<name>.part`` in the staging folder, verified, then moved (a ``.zip`` is
  unpacked into a staging folder first, member names checked, then the folder is moved).

Nothing half-written ever sits at a final path: a failed, interrupted or refused download leaves
at most a ``.part`` file under ``<checkpoints>/.downloads/`` that the next run resumes, or nothing.

Verification, strongest first: the registry's published SHA-256 / MD5; else the Hub's own SHA-256
(the ETag of a Hub LFS file); else a structural check (``check``: the file loads as a tensor state
dict, or the archive holds the expected ONNX models). Whatever passes, the SHA-256 is recorded in
``<checkpoints>/.downloads/verified.json`` so ``doctor --verify`` can tell a later change.

Mirrors: Hub files honour ``HF_ENDPOINT`` (huggingface_hub's own setting); plain URLs honour
``CAPHUMAN_DOWNLOAD_MIRROR``: ``https://host/path`` is fetched as ``$CAPHUMAN_DOWNLOAD_MIRROR/host/path``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable
from urllib.parse import urlsplit

from caphuman.errors import CapHumanError, MissingWeightsError
from caphuman.weights.record import RECORD_NAME, STAGING_DIRNAME, read_record, staging_dir  # noqa: F401
from caphuman.weights.record import write_record as _write_record
from caphuman.weights.registry import WeightFile, file_checksum

MIRROR_ENV = "CAPHUMAN_DOWNLOAD_MIRROR"
#: Files of a transformers CLIP repo that the pipeline needs (weights as safetensors only).
CLIP_PATTERNS = ["*.json", "*.txt", "model.safetensors"]
#: The same files by name (what a Space's ``preload_from_hub`` lists and the Hub cache is searched for).
CLIP_FILES = ("config.json", "merges.txt", "model.safetensors", "preprocessor_config.json",
              "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json", "vocab.json")

Log = Callable[[str], None]


class ChecksumError(CapHumanError):
    """A downloaded file does not match its published checksum (it has been deleted)."""


# ---------------------------------------------------------------------------- small helpers


def mirrored(url: str) -> str:
    """``url`` rewritten onto ``$CAPHUMAN_DOWNLOAD_MIRROR`` when it is set."""
    mirror = os.environ.get(MIRROR_ENV, "").rstrip("/")
    if not mirror:
        return url
    parts = urlsplit(url)
    return f"{mirror}/{parts.netloc}{parts.path}" + (f"?{parts.query}" if parts.query else "")


def is_offline(offline: bool = False) -> bool:
    """``offline`` or ``HF_HUB_OFFLINE`` set to a true value."""
    return offline or os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else "no details"
    return f"{type(exc).__name__}: {text}"


# ---------------------------------------------------------------------------- verification
def _check_published(entry: WeightFile, path: Path) -> str | None:
    """Compare with the registry's sha256/md5; returns "sha256"/"md5" when one matched, None when
    none is published; raises :class:`ChecksumError` on a mismatch."""
    for algo in ("sha256", "md5"):
        want = getattr(entry, algo)
        if want:
            got = file_checksum(path, algo)
            if got != want.lower():
                raise ChecksumError(f"{entry.key}: the download fails its {algo} check (got {got}, expected "
                                    f"{want}); it was deleted. Try again later or from another mirror")
            return algo
    return None


def _check_structure(entry: WeightFile, path: Path) -> str:
    """The registry's structural check of ``path`` (a file, or an unpacked folder)."""
    if entry.check == "torch_state_dict":
        from caphuman.weights.safe_load import load_torch_file

        try:
            obj = load_torch_file(path)
        except CapHumanError as exc:
            raise ChecksumError(f"{entry.key}: the download is not a usable checkpoint ({exc}); it was deleted") \
                from None
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
        if not isinstance(state, dict) or not state:
            raise ChecksumError(f"{entry.key}: the download holds no state dict; it was deleted")
        return "loads as a state dict"
    if entry.check == "onnx_pack":
        missing = [m for m in entry.members if not (path / m).is_file()]
        if missing:
            raise ChecksumError(f"{entry.key}: the archive lacks {', '.join(missing)}; it was deleted")
        return f"archive holds {len(entry.members)} expected models"
    return "no published checksum"


def _place(src: Path, dst: Path) -> None:
    """Move a verified file or folder to its final path (replacing what is there)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.is_dir() and src.is_dir():
        shutil.rmtree(dst)
    os.replace(src, dst)


# ---------------------------------------------------------------------------- the three sources
def _http_errors():
    import httpx2  # huggingface_hub's HTTP client
    from huggingface_hub import errors as hf_errors

    return (hf_errors.HfHubHTTPError, hf_errors.LocalEntryNotFoundError, httpx2.HTTPError, OSError,
            ConnectionError, TimeoutError, ValueError)


def _fetch_url(entry: WeightFile, root: Path, log: Log) -> tuple[Path, str, str]:
    """Plain URL -> verified file (or unpacked folder) in staging. Returns (path, how verified, sha256)."""
    from huggingface_hub.file_download import http_get

    stage = staging_dir(root)
    stage.mkdir(parents=True, exist_ok=True)
    name = Path(urlsplit(entry.url).path).name or entry.key
    part = stage / f"{name}.part"
    url = mirrored(entry.url)
    resume = part.stat().st_size if part.is_file() else 0
    if resume:
        log(f"{entry.key}: resuming {name} at {resume} bytes")
    try:
        with open(part, "ab") as f:
            http_get(url, f, resume_size=resume, expected_size=entry.size_bytes, displayed_filename=name)
    except _http_errors() as exc:
        raise CapHumanError(f"{entry.key}: could not download {url} ({_short(exc)}); check the network and "
                            f"run the same command again: it resumes ({part.stat().st_size if part.is_file() else 0}"
                            " bytes kept)") from None
    try:
        how = _check_published(entry, part)
        sha = file_checksum(part, "sha256")
        if entry.archive == "zip":
            from caphuman.weights.archive import ArchiveError, safe_extract_zip

            unpacked = stage / f"{entry.key}.unpacked"
            shutil.rmtree(unpacked, ignore_errors=True)
            try:
                safe_extract_zip(part, unpacked)
            except ArchiveError as exc:
                raise ChecksumError(f"{entry.key}: {exc}; it was deleted") from None
            how = how or _check_structure(entry, unpacked)
            part.unlink()
            return unpacked, how, sha
        how = how or _check_structure(entry, part)
    except ChecksumError:
        part.unlink(missing_ok=True)
        shutil.rmtree(stage / f"{entry.key}.unpacked", ignore_errors=True)
        raise
    return part, how, sha


def _fetch_hub_file(entry: WeightFile, root: Path, offline: bool, log: Log):
    """One Hub file -> verified file in staging. Returns (path, how verified, sha256)."""
    import huggingface_hub

    stage = staging_dir(root) / entry.key
    hub_sha = None
    try:
        if not offline:
            meta = huggingface_hub.get_hf_file_metadata(huggingface_hub.hf_hub_url(entry.hub_repo, entry.hub_filename))
            etag = (meta.etag or "").strip('"').lower()
            hub_sha = etag if len(etag) == 64 and all(c in "0123456789abcdef" for c in etag) else None
        got = Path(huggingface_hub.hf_hub_download(entry.hub_repo, entry.hub_filename, local_dir=stage,
                                                   local_files_only=offline))
    except _http_errors() as exc:
        raise _network_error(entry, exc, offline) from None
    try:
        how = _check_published(entry, got)
        sha = file_checksum(got, "sha256")
        if how is None and hub_sha is not None:
            if sha != hub_sha:
                raise ChecksumError(f"{entry.key}: the download does not match the Hub's SHA-256 ({sha} != "
                                    f"{hub_sha}); it was deleted. Run the command again")
            how = "hub sha256"
        how = how or _check_structure(entry, got)
    except ChecksumError:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return got, how, sha


def _network_error(entry: WeightFile, exc: Exception, offline: bool) -> CapHumanError:
    where = f"{entry.hub_repo}/{entry.hub_filename or ''}".rstrip("/") if entry.hub_repo else mirrored(entry.url or "")
    if offline:
        return MissingWeightsError(f"{entry.key}: not available offline (no local copy of {where}); "
                                   "run without --offline when the network is up")
    return CapHumanError(f"{entry.key}: could not download {where} ({_short(exc)}); check the network "
                         "or use --offline with files already in checkpoints/")


def local_ok(entry: WeightFile, target: Path, verify: bool = True) -> bool:
    """Is ``target`` present and (for a file with a published checksum, unless ``verify`` is off:
    that reads every byte) intact?"""
    if target.is_dir():
        return all((target / m).is_file() for m in entry.members) and any(target.iterdir())
    if not target.is_file() or target.stat().st_size == 0:
        return False
    if not verify:
        return True
    try:
        _check_published(entry, target)
    except ChecksumError:
        return False
    return True


def fetch(entry: WeightFile, root: str | os.PathLike, offline: bool = False, log: Log = print) -> Path:
    """Put ``entry`` at ``root / entry.path``, downloading it when missing; returns that path.

    Raises :class:`MissingWeightsError` (gated, or offline without a copy), :class:`ChecksumError`
    (the download failed verification and was deleted) or :class:`CapHumanError` (network)."""
    root = Path(root)
    target = root / entry.path
    offline = is_offline(offline)
    if not entry.downloadable:
        if target.exists():
            return target
        raise MissingWeightsError(f"{entry.key}: licence-gated, never downloaded automatically: get it from "
                                  f"{entry.manual_url} and put it at {target}")
    if entry.hub_repo and not target.exists() and (cached := from_hub_cache(entry)) is not None:
        return _link_from_cache(entry, root, target, cached, log)
    if entry.hub_repo and not entry.hub_filename:  # a whole repo: huggingface_hub places each file atomically
        import huggingface_hub

        log(f"{entry.key}: {entry.description} -- licence: {entry.licence}")
        try:
            huggingface_hub.snapshot_download(entry.hub_repo, local_dir=target, allow_patterns=CLIP_PATTERNS,
                                              local_files_only=offline)
        except _http_errors() as exc:
            raise _network_error(entry, exc, offline) from None
        return target
    if unchanged_since_verified(root, entry, target):
        log(f"{entry.key}: already present, verified before ({target})")
        return target
    if local_ok(entry, target):
        log(f"{entry.key}: already present ({target})")
        return target
    if target.exists():
        log(f"{entry.key}: the copy at {target} fails its checksum; downloading again")
    if offline and not entry.hub_repo:
        raise MissingWeightsError(f"{entry.key}: not available offline (no copy at {target}); "
                                  "run without --offline when the network is up")
    if entry.notice:
        log(f"{entry.key}: NOTE: {entry.notice}")
    log(f"{entry.key}: {entry.description} from {entry.source if entry.hub_repo else mirrored(entry.url)} "
        f"-- licence: {entry.licence}")
    if entry.hub_repo:
        staged, how, sha = _fetch_hub_file(entry, root, offline, log)
    else:
        staged, how, sha = _fetch_url(entry, root, log)
    _place(staged, target)
    if entry.hub_repo:
        shutil.rmtree(staging_dir(root) / entry.key, ignore_errors=True)
    _write_record(root, entry.key, {"sha256": sha, "verified_by": how,
                                    "source": entry.source if entry.hub_repo else entry.url, **_stamp(target)})
    log(f"{entry.key}: ok, verified ({how}) -> {target}")
    return target


# ---------------------------------------------------------------------------- the Hub cache (preload_from_hub)
def from_hub_cache(entry: WeightFile) -> Path | None:
    """``entry`` already in the local Hub cache (a Space's ``preload_from_hub`` puts it there at build
    time; so does any earlier ``huggingface_hub`` download): the cached file, or for a whole repo the
    snapshot folder holding every file of :data:`CLIP_FILES`; None when it is not all there."""
    if not entry.hub_repo:
        return None
    from huggingface_hub import try_to_load_from_cache

    names = (entry.hub_filename,) if entry.hub_filename else CLIP_FILES
    found = []
    for name in names:
        try:
            hit = try_to_load_from_cache(entry.hub_repo, name)
        except (OSError, ValueError):
            return None
        if not isinstance(hit, str) or not Path(hit).is_file():
            return None
        found.append(Path(hit))
    if entry.hub_filename:
        return found[0]
    folders = {p.parent for p in found}
    return folders.pop() if len(folders) == 1 else None


def _link_from_cache(entry: WeightFile, root: Path, target: Path, cached: Path, log: Log) -> Path:
    """Verify the cached copy as a download would be, then link ``target`` to it (no copy: the
    cache keeps the only copy of a multi-GB file); copies where links are not possible."""
    if entry.hub_filename:
        try:
            how = _check_published(entry, cached)
        except ChecksumError:
            raise ChecksumError(f"{entry.key}: the copy in the Hub cache ({cached}) fails its checksum; delete "
                                "it and run the command again") from None
        sha = file_checksum(cached, "sha256")
        if how is None:  # an LFS blob is named by its SHA-256 (what huggingface_hub downloaded)
            blob = Path(os.path.realpath(cached)).name
            how = "hub sha256" if blob == sha else _check_structure(entry, cached)
    else:
        how, sha = "per-file Hub SHA-256, checked by huggingface_hub", None
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        target.symlink_to(cached.resolve() if entry.hub_filename else cached, target_is_directory=cached.is_dir())
    except OSError:
        (shutil.copytree if cached.is_dir() else shutil.copy2)(cached, target)
    _write_record(root, entry.key, {"sha256": sha, "verified_by": how, "source": f"Hub cache: {entry.source}",
                                    **_stamp(target)})
    log(f"{entry.key}: from the Hub cache ({how}) -> {target}")
    return target


# ---------------------------------------------------------------------------- re-verification
def _stamp(path: Path) -> dict:
    """Size and modification time (links followed) of a verified file, to recognise it unchanged."""
    try:
        st = path.stat()
    except OSError:
        return {}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns} if path.is_file() else {}


def unchanged_since_verified(root: Path, entry: WeightFile, target: Path) -> bool:
    """``target`` is the very file verified when it was fetched (same size and modification time as
    recorded): no need to hash it again. ``doctor --verify`` still hashes everything."""
    rec = read_record(root).get(entry.key, {})
    stamp = _stamp(target)
    return bool(stamp) and rec.get("size") == stamp["size"] and rec.get("mtime_ns") == stamp["mtime_ns"]
