"""``python -m caphuman evaluate``: the CapHuman paper's HumanIPHC-style protocol on your own material.

    python -m caphuman evaluate --references photos/ --prompts prompts.txt --conditions conditions/ \\
        --seeds 1,2,3 --out eval/

Every reference photo x prompt x head condition x seed is generated through the batch engine (resumable),
then each image is scored: identity (FaceNet cosine to the reference), text alignment (CLIP ViT-L/14
score), head control (pose error in degrees by |yaw| bin, expression and lighting coefficient error,
from the head re-fitted to the image). Writes OUT/scores.csv, OUT/summary.json, OUT/summary.png; see
:mod:`caphuman.evaluation.run` for the folder layout and the README's Evaluate section for the metrics.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from caphuman.cli.batch import add_run_arguments
    from caphuman.cli.sweep import add_sampling_arguments

    m = parser.add_argument_group("material")
    m.add_argument("--references", required=True, metavar="DIR",
                   help="folder of reference photos (.jpg .jpeg .png .webp .bmp .tif .tiff)")
    m.add_argument("--prompts", required=True, metavar="FILE", help="text file, one prompt per line (# comments)")
    m.add_argument("--conditions", required=True, metavar="FILE_OR_DIR",
                   help="head conditions: a folder of head-state .json files, or one .json list of head states")
    m.add_argument("--condition-modes", default="pose,expression,lighting",
                   help="what a condition sets on the reference's fitted head: position, pose, expression, "
                        "lighting or all (default pose,expression,lighting; shape and albedo stay the reference's)")
    m.add_argument("--seeds", default="1", help="seeds, e.g. 1,2,3 (default 1)")
    m.add_argument("--num-images", type=int, default=1,
                   help="images per (photo, prompt, condition, seed), 1-8: seeds s, s+1, ... (default 1)")
    m.add_argument("--negative-prompt", default="", help="negative prompt for every image (default: empty)")
    m.add_argument("--out", required=True, metavar="DIR", help="output folder (running again resumes)")
    s = parser.add_argument_group("scoring")
    s.add_argument("--facenet", default=None, metavar="PATH",
                   help="FaceNet weights (default checkpoints/facenet/20180402-114759-vggface2.pt)")
    s.add_argument("--clip", default=None, metavar="DIR",
                   help="CLIP model folder with text and vision projections (default checkpoints/clip-vit-large-patch14)")
    s.add_argument("--yaw-bins", default="15,30,45", help="|yaw| bin edges in degrees (default 15,30,45)")
    s.add_argument("--rescore", action="store_true", help="recompute every score instead of reusing OUT/scores.jsonl")
    g = parser.add_argument_group("generation")
    add_sampling_arguments(g)
    add_run_arguments(parser)


def run(args) -> int:
    from caphuman.evaluation.run import run_evaluation

    return run_evaluation(args)
