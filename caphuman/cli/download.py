"""``python -m caphuman download [TARGET] [--dry-run] [--offline] [--no-convert]``.

Fetches the public weights (see ``--dry-run`` for every file, its source, checksum and licence),
then converts the CapHuman checkpoint + backbone into the diffusers folder generation loads.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caphuman.weights.download import TARGETS

    parser.add_argument("target", nargs="?", default="all", choices=TARGETS,
                        help="a group (all, caphuman, backbone, encoders, analysis, deca-data, fast) or one file key (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list every file: source, size, checksum, licence, present or not (no network)")
    parser.add_argument("--offline", action="store_true", help="use only files already on disk / in the Hub cache")
    parser.add_argument("--no-convert", action="store_true", help="do not build the diffusers folder afterwards")


def fetch_and_convert(target: str = "all", offline: bool = False, convert: bool = True, root=None,
                      log=print) -> Path | None:
    """Download ``target``, then (when the CapHuman checkpoint and the backbone are both present)
    convert them into ``<checkpoints>/caphuman-diffusers``; returns that folder, or None when no
    conversion ran. Shared by this command and the studio's start-up download."""
    from caphuman.weights.download import CONVERTED_DIRNAME, download
    from caphuman.weights.registry import checkpoints_root, local_path

    from caphuman.weights.download import target_keys

    root = Path(root) if root else checkpoints_root()
    download(target, offline=offline, root=root, log=log)
    ckpt, backbone = local_path("caphuman", root), local_path("backbone", root)
    if not convert or not {"caphuman", "backbone", "vae", "clip"} & set(target_keys(target)):
        return None  # nothing the conversion reads was asked for (e.g. `download fast`)
    if not (ckpt.is_file() and backbone.is_file()):
        log("conversion skipped: it needs both the CapHuman checkpoint and the backbone "
            "(`python -m caphuman download all`)")
        return None
    from caphuman.diffusion.convert import convert_caphuman

    vae, clip = local_path("vae", root), local_path("clip", root)
    out = root / CONVERTED_DIRNAME
    if (out / "model_index.json").is_file() and all(
            (out / "model_index.json").stat().st_mtime >= p.stat().st_mtime for p in (ckpt, backbone)):
        log(f"converted weights already up to date: {out}")
        return out
    convert_caphuman(ckpt, out, backbone=backbone, vae=vae if vae.is_file() else None,
                     clip=clip if clip.exists() else None, log=log)
    return out


def run(args) -> int:
    if args.dry_run:
        from caphuman.weights.download import plan
        from caphuman.weights.registry import checkpoints_root

        rows = plan(args.target)
        print(f"checkpoints folder: {checkpoints_root()}  (dry run: nothing is downloaded)\n")
        for row in rows:
            print(row.format())
        todo = [r.key for r in rows if r.action == "download"]
        manual = [r.key for r in rows if r.action == "manual"]
        print(f"\n{len(todo)} to download ({', '.join(todo) or 'none'}); "
              f"{len(manual)} manual ({', '.join(manual) or 'none'})")
        return 0
    out = fetch_and_convert(args.target, offline=args.offline, convert=not args.no_convert)
    if out is not None:
        print(f"converted weights: {out}")
    return 0
