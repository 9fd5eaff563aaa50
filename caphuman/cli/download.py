"""``python -m caphuman download [TARGET] [--dry-run] [--offline] [--no-convert]``.

Fetches the public weights (see ``--dry-run`` for every file, its source, checksum and licence),
then converts the CapHuman checkpoint + backbone into the diffusers folder generation loads.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caphuman.weights.download import TARGETS

    parser.add_argument("target", nargs="?", default="all", choices=TARGETS,
                        help="a group (all, caphuman, backbone, encoders, analysis, deca-data, fast) or one file key (default: all)")
    parser.add_argument("--dry-run", action="store_true",
                        help="list every file: source, size, checksum, licence, present or not (no network)")
    parser.add_argument("--offline", action="store_true", help="use only files already on disk / in the Hub cache")
    parser.add_argument("--no-convert", action="store_true", help="do not build the diffusers folder afterwards")


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
    from caphuman.weights.provision import fetch_and_convert

    out = fetch_and_convert(args.target, offline=args.offline, convert=not args.no_convert)
    if out is not None:
        print(f"converted weights: {out}")
    return 0
