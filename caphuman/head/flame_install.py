"""Install a FLAME model the user downloaded: ``FLAME2023Open.zip``, ``flame2023_Open.pkl`` or a
FLAME 2020 ``generic_model.pkl``.

The archive is checked (the published FLAME 2023 Open release by size + SHA-256; anything else by
its FLAME structure), only the model pickle is extracted (member names, sizes and ratios checked:
no traversal, no zip bomb), the pickle is read with the restricted unpickler (chumpy objects kept
as data, nothing executed) and checked for the FLAME layout, then moved into place atomically
and recorded in ``<checkpoints>/flame/installed.json`` (release, licence, SHA-256). When DECA's
landmark embedding is present the model is converted once to the project's ``.npz`` cache.
A failure at any step leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caphuman.errors import InputError
from caphuman.head.flame_files import FLAME_2023_OPEN_ATTRIBUTION, FLAME_RELEASES, INSTALL_RECORD

#: The published FLAME 2023 Open archive (facts checked against, never trusted blindly: a file of
#: this size whose SHA-256 differs is refused; another size is checked by structure only).
KNOWN_RELEASES = {
    "FLAME2023Open.zip": (47_586_229, "a6b4c3dc15d569d98136a1e548b6fe532eb2830ca12a4f0d4b3a5dba8ee87a91"),
}
#: FLAME topology every release shares (the landmark embedding is tied to it).
FLAME_VERTICES = 5023
FLAME_FACES = 9976
#: A FLAME pickle is ~50-200 MB; nothing in an archive may unpack to more than this.
MAX_MODEL_BYTES = 1 << 30


@dataclass
class InstalledFlame:
    """What :func:`install_flame` did: ``path`` of the model pickle, its ``release`` and ``licence``,
    how it was ``verified``, and ``notes`` for the user (next steps, attribution)."""

    path: Path
    release: str
    licence: str
    verified: str
    sha256: str
    notes: list[str]


def _sha256(path: Path) -> str:
    from caphuman.weights.registry import file_checksum

    return file_checksum(path, "sha256")


def check_flame_pickle(path: Path) -> dict:
    """Read ``path`` with the restricted unpickler and check the FLAME layout; returns the arrays."""
    from caphuman.head.safe_pickle import load_pickle_file, to_numpy

    raw = to_numpy(load_pickle_file(path))  # UnsafePickleError / InputError: nothing was executed
    if not isinstance(raw, dict):
        raise InputError(f"{path.name}: not a FLAME model (a pickled {type(raw).__name__}, not a dict)")
    need = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
    missing = [k for k in need if k not in raw]
    if missing:
        raise InputError(f"{path.name}: not a FLAME model (missing {', '.join(missing)})")

    def shape(key):
        return tuple(np.shape(np.asarray(raw[key]))) if key != "J_regressor" else tuple(raw[key].shape)

    problems = []
    if shape("v_template") != (FLAME_VERTICES, 3):
        problems.append(f"v_template {shape('v_template')} (FLAME has ({FLAME_VERTICES}, 3))")
    if shape("f") != (FLAME_FACES, 3):
        problems.append(f"f {shape('f')} (FLAME has ({FLAME_FACES}, 3))")
    sd = shape("shapedirs")
    if len(sd) != 3 or sd[:2] != (FLAME_VERTICES, 3) or sd[2] < 100:
        problems.append(f"shapedirs {sd}")
    if shape("J_regressor") != (5, FLAME_VERTICES) or shape("weights") != (FLAME_VERTICES, 5):
        problems.append("joints (expected 5)")
    if problems:
        raise InputError(f"{path.name}: not the FLAME layout: {'; '.join(problems)}")
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        arr = np.asarray(raw[key])
        if arr.dtype.kind not in "fiu" or not np.isfinite(arr.astype(np.float64, copy=False)).all():
            problems.append(f"{key} holds NaN, infinity or non-numbers")
    faces = np.asarray(raw["f"])
    if faces.dtype.kind not in "iu" or faces.min() < 0 or faces.max() >= FLAME_VERTICES:
        problems.append(f"f indexes vertices outside 0..{FLAME_VERTICES - 1}")
    if problems:
        raise InputError(f"{path.name}: a damaged FLAME model: {'; '.join(problems)}")
    return raw


def _pick_member(zf, name: str):
    from caphuman.weights.archive import checked_members

    members = checked_members(zf, name, MAX_MODEL_BYTES)
    models = [(info, parts) for info, parts in members if parts[-1] in FLAME_RELEASES]
    if not models:
        pkls = [parts[-1] for _, parts in members if parts[-1].endswith(".pkl")]
        raise InputError(f"{name} holds no FLAME model ({', '.join(FLAME_RELEASES)})"
                         + (f"; found {', '.join(pkls[:5])}" if pkls else ""))
    # FLAME 2023 Open first, in the order of FLAME_RELEASES.
    models.sort(key=lambda m: list(FLAME_RELEASES).index(m[1][-1]))
    return models[0]


def install_flame(source: str | os.PathLike, flame_dir: str | os.PathLike | None = None,
                  log=print) -> InstalledFlame:
    """Install ``source`` (zip or pickle) into ``flame_dir`` (default ``<checkpoints>/flame``)."""
    from caphuman.weights.archive import extract_member, open_zip
    from caphuman.weights.registry import local_path

    source = Path(source).expanduser()
    if not source.is_file():
        raise InputError(f"{source}: no such file (expected FLAME2023Open.zip, flame2023_Open.pkl or "
                         "generic_model.pkl)")
    flame_dir = Path(flame_dir).expanduser() if flame_dir is not None else local_path("flame").parent
    if flame_dir.exists() and not flame_dir.is_dir():
        raise InputError(f"{flame_dir} is an existing file, not a folder: name a folder to install into")
    try:
        flame_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent is a file, no permission, read-only disk
        raise InputError(f"cannot create the folder {flame_dir} ({exc.strerror or type(exc).__name__})") from None
    staging = flame_dir / f".installing-{os.getpid()}-{time.monotonic_ns()}"
    staging.mkdir()
    try:
        if source.suffix.lower() == ".zip":
            verified = _check_archive(source)
            with open_zip(source) as zf:
                info, parts = _pick_member(zf, source.name)
                model_name = parts[-1]
                staged = extract_member(zf, info, staging / model_name, source.name)
        elif source.suffix.lower() == ".pkl":
            model_name = source.name if source.name in FLAME_RELEASES else None
            if model_name is None:
                raise InputError(f"{source.name}: unknown FLAME file name; expected one of "
                                 f"{', '.join(FLAME_RELEASES)} (or the release zip)")
            staged = staging / model_name
            shutil.copyfile(source, staged)
            verified = "checked by structure"
        else:
            raise InputError(f"{source.name}: expected a .zip (FLAME2023Open.zip) or a .pkl")
        check_flame_pickle(staged)
        sha = _sha256(staged)
        release, licence = FLAME_RELEASES[model_name]
        target = flame_dir / model_name
        record = {"model": model_name, "release": release, "licence": licence, "sha256": sha,
                  "source": source.name, "verified": verified}
        if model_name == "flame2023_Open.pkl":
            record["attribution"] = FLAME_2023_OPEN_ATTRIBUTION
        notes = [f"installed {release} ({licence}) at {target} [{verified}]"]
        if "attribution" in record:
            notes.append("CC-BY-4.0 asks you to credit it wherever you publish results: " + record["attribution"])
        notes += _commit(flame_dir, staging, staged, target, record, log)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return InstalledFlame(target, release, licence, verified, sha, notes)


def _commit(flame_dir: Path, staging: Path, staged: Path, target: Path, record: dict, log) -> list[str]:
    """Put the checked model in place, record it and convert it; if any of that fails, the files it
    replaced (model, record, cache) are put back, so a working install keeps working."""
    touched = [target, flame_dir / INSTALL_RECORD, target.with_name(f"{target.stem}.caphuman.npz")]
    backup = staging / "previous"
    backup.mkdir()
    saved = []
    for path in touched:
        if path.exists():
            os.replace(path, backup / path.name)
            saved.append(path)
    try:
        os.replace(staged, target)
        tmp = flame_dir / (INSTALL_RECORD + ".tmp")
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, flame_dir / INSTALL_RECORD)
        return _finish(flame_dir, log)
    except BaseException:
        for path in touched:
            if path.exists():
                path.unlink()
        for path in saved:
            os.replace(backup / path.name, path)
        raise


def _check_archive(source: Path) -> str:
    known = KNOWN_RELEASES.get(source.name)
    size = source.stat().st_size
    for name, (k_size, k_sha) in KNOWN_RELEASES.items():
        if size == k_size:
            if _sha256(source) != k_sha:
                raise InputError(f"{source.name} has the size of the published {name} but not its SHA-256: "
                                 "the download is corrupt or altered; download it again")
            return f"the published {name} (size and SHA-256 match)"
    if known is not None:
        return f"not byte-identical to the published {source.name} ({size:,} bytes); checked by structure"
    return "checked by structure"


def _finish(flame_dir: Path, log) -> list[str]:
    """Convert to the .npz cache when the DECA landmark file is there; else say how to get it."""
    import warnings

    from caphuman.errors import CapHumanError
    from caphuman.head.flame_files import find_flame_files, load_flame

    files = find_flame_files(flame_dir)
    if files["landmarks"] is None and flame_dir.name != "flame":
        return ["FLAME also needs DECA's landmark_embedding.npy (and head_template.obj) in "
                f"{flame_dir}: `python -m caphuman download deca-data` puts them in checkpoints/flame/"]
    if files["landmarks"] is None:
        try:
            from caphuman.weights.download import download

            download("deca-data", root=flame_dir.parent, log=log)
        except CapHumanError as exc:
            return [f"FLAME also needs DECA's landmark_embedding.npy: run `python -m caphuman download deca-data` "
                    f"({exc})"]
        files = find_flame_files(flame_dir)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_flame(flame_dir)
    notes = [f"converted to {files['model'].stem}.caphuman.npz: {data.num_vertices} vertices, "
             f"{data.f.shape[0]} faces, {data.num_shape} shape + {data.shapedirs.shape[2] - data.num_shape} "
             "expression directions"]
    notes += [str(w.message) for w in caught]
    return notes
