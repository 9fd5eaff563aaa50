"""Fetch, then convert: the one routine behind ``python -m caphuman download`` and the studio's start-up.

Files come from ``checkpoints/`` when present, else from the Hub cache (a Space's ``preload_from_hub``
puts them there at build time: they are linked, not copied or downloaded), else from the network.
The conversion runs only when its inputs are newer than the converted folder, so a second start-up
converts nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from caphuman.weights.download import CONVERTED_DIRNAME, download, target_keys
from caphuman.weights.fetch import Log
from caphuman.weights.registry import checkpoints_root, local_path

#: Registry files the conversion reads (a target without any of them converts nothing).
CONVERSION_INPUTS = ("caphuman", "backbone", "vae", "clip")


def converted_up_to_date(out: Path, inputs: list[Path]) -> bool:
    """``out`` holds a converted pipeline at least as new as every input file (mtimes, links followed)."""
    index = out / "model_index.json"
    return index.is_file() and all(index.stat().st_mtime >= p.stat().st_mtime for p in inputs)


def fetch_and_convert(target: str = "all", offline: bool = False, convert: bool = True,
                      root: str | os.PathLike | None = None, log: Log = print) -> Path | None:
    """Download ``target``, then (when the CapHuman checkpoint and the backbone are both present)
    convert them into ``<checkpoints>/caphuman-diffusers``; returns that folder, or None when no
    conversion ran or was asked for."""
    root = Path(root) if root else checkpoints_root()
    download(target, offline=offline, root=root, log=log)
    if not convert or not set(CONVERSION_INPUTS) & set(target_keys(target)):
        return None  # nothing the conversion reads was asked for (e.g. `download fast`)
    ckpt, backbone = local_path("caphuman", root), local_path("backbone", root)
    if not (ckpt.is_file() and backbone.is_file()):
        log("conversion skipped: it needs both the CapHuman checkpoint and the backbone "
            "(`python -m caphuman download all`)")
        return None
    vae, clip = local_path("vae", root), local_path("clip", root)
    out = root / CONVERTED_DIRNAME
    if converted_up_to_date(out, [ckpt, backbone]):
        log(f"converted weights already up to date: {out}")
        return out
    from caphuman.diffusion.convert import convert_caphuman

    convert_caphuman(ckpt, out, backbone=backbone, vae=vae if vae.is_file() else None,
                     clip=clip if clip.exists() else None, log=log)
    return out


def preload_from_hub(target: str = "all") -> list[str]:
    """The README front matter's ``preload_from_hub`` entries (``repo file1,file2``) for the Hub files
    of ``download TARGET``: a Space downloads them into its Hub cache at build time, and
    :func:`fetch_and_convert` at start-up links them from there instead of downloading."""
    from caphuman.weights.fetch import CLIP_FILES
    from caphuman.weights.registry import REGISTRY

    lines = []
    for key in target_keys(target):
        w = REGISTRY[key]
        if w.hub_repo and w.downloadable:
            lines.append(f"{w.hub_repo} {w.hub_filename or ','.join(CLIP_FILES)}")
    return lines
