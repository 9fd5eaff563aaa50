"""Choose the head model: ``auto`` (FLAME when the user installed it, else built-in), ``builtin``,
or a path (a FLAME folder / ``.pkl``, or a head ``.npz``)."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from caphuman.errors import InputError, MissingWeightsError
from caphuman.head.model_data import HeadModelData

BUILTIN_PATH = Path(__file__).resolve().parents[2] / "assets" / "head" / "builtin_head.npz"


@dataclass
class ResolvedHead:
    data: HeadModelData
    kind: str          # "flame" | "builtin" | "custom"
    description: str   # one line for people ("FLAME from checkpoints/flame (flat albedo)")


def flame_folder() -> Path:
    from caphuman.weights.registry import local_path

    return local_path("flame").parent


@functools.lru_cache(maxsize=8)
def _load(spec: str) -> ResolvedHead:
    from caphuman.head.flame_files import find_flame_files, load_flame

    if spec == "builtin":
        if not BUILTIN_PATH.is_file():
            raise MissingWeightsError(
                f"built-in head {BUILTIN_PATH} is missing; rebuild it with "
                "`python -m caphuman.head.builtin`")
        return ResolvedHead(HeadModelData.load_npz(BUILTIN_PATH), "builtin", "built-in open head (Apache-2.0)")
    if spec == "auto":
        folder = flame_folder()
        files = find_flame_files(folder) if folder.is_dir() else {"model": None}
        if files.get("model") is not None and files.get("landmarks") is not None:
            data = load_flame(folder)
            return ResolvedHead(data, "flame", f"{data.name} from {folder}{_albedo_note(data)}")
        head = _load("builtin")
        why = "no FLAME files in " + str(folder) if files.get("model") is None else "FLAME found but landmark_embedding.npy is missing"
        return ResolvedHead(head.data, "builtin", f"built-in open head ({why})")
    path = Path(spec).expanduser()
    if not path.exists():
        raise InputError(f"--head: {path} does not exist (use auto, builtin, a FLAME folder or a head .npz)")
    if path.suffix == ".npz":
        data = HeadModelData.load_npz(path)
        return ResolvedHead(data, "custom", f"head model {path.name}")
    data = load_flame(path)
    return ResolvedHead(data, "flame", f"{data.name} from {path}{_albedo_note(data)}")


def _albedo_note(data: HeadModelData) -> str:
    return "" if data.num_albedo else " (flat skin albedo: FLAME_texture.npz/head_template.obj not found)"


def load_head(spec: str | os.PathLike = "auto") -> ResolvedHead:
    """Resolve and load a head model (cached per spec)."""
    return _load(str(spec))


def forget_loaded_heads() -> None:
    """Drop the cached heads (after FLAME was installed, ``auto`` may now mean FLAME)."""
    _load.cache_clear()
