"""``python -m caphuman download [caphuman|backbone|encoders|fast|all]``: fetch public weights, then convert."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", default="all",
                        choices=("caphuman", "backbone", "encoders", "fast", "all"),
                        help="what to fetch (default: all; fast: the LCM-LoRA of --preset fast)")
    parser.add_argument("--offline", action="store_true", help="use only files already on disk / in the Hub cache")
    parser.add_argument("--no-convert", action="store_true", help="do not build the diffusers folder afterwards")


def run(args) -> int:
    from caphuman.weights.download import download

    out = download(args.target, offline=args.offline, convert=not args.no_convert)
    if out is not None:
        print(f"converted weights: {out}")
    return 0
