"""``python -m caphuman install-flame PATH``: install the FLAME model you downloaded.

PATH: ``FLAME2023Open.zip`` (recommended: free sign-in at https://flame.is.tue.mpg.de, CC-BY-4.0,
commercial use allowed with attribution), ``flame2023_Open.pkl``, or a FLAME 2020
``generic_model.pkl`` (non-commercial). Nothing in the file is executed.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="FLAME2023Open.zip, flame2023_Open.pkl or generic_model.pkl")
    parser.add_argument("--flame-dir", default=None, help="install folder (default: checkpoints/flame)")


def run(args) -> int:
    from caphuman.head.flame_install import install_flame

    result = install_flame(args.path, args.flame_dir)
    for note in result.notes:
        print(note)
    print("the studio and `--head auto` now use it")
    return 0
