"""Reference photo (+ optional pose photo) -> head state and output frame, shared by every entry point.

``preview --reference``, ``generate`` and the studio all start here so the head you preview is the
head you generate with: the reference is analysed (detection + fit, cached by content), the
pose photo's fields named in ``modes`` are transferred (position / pose / expression / lighting),
and the result is the sliders' starting state plus the square frame image both renders use.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from caphuman.controls.state import HeadState


@dataclass
class ReferenceHead:
    """state: fitted (and transferred) head state; frame: uint8 (size, size, 3) output frame;
    analysis: the reference's :class:`caphuman.face.analysis.ReferenceAnalysis`."""

    state: HeadState
    frame: np.ndarray
    analysis: Any


def reference_head(pipeline, reference: Any, size: int, pose_reference: Any = None,
                   modes: Any = ("position", "pose"), notes=sys.stderr) -> ReferenceHead:
    """Analyse ``reference`` for ``pipeline``'s head model; transfer ``modes`` from ``pose_reference``.

    ``notes``: a stream that receives the analysis warnings (None to stay quiet).
    """
    from caphuman.face.analysis import Encoders, analyze_reference, target_for_pipeline
    from caphuman.face.transfer import parse_modes, transfer

    target = target_for_pipeline(pipeline)
    ref = analyze_reference(reference, size, target=target)
    state = ref.reset_state()
    warnings = list(ref.warnings)
    if pose_reference is not None:
        wanted = parse_modes(modes)
        pose = analyze_reference(pose_reference, size, target=target, encoders=Encoders())
        warnings += [f"pose photo: {w}" for w in pose.warnings]
        state = transfer(state, pose.reset_state(), wanted)
    if notes is not None:
        for w in warnings:
            print(f"note: {w}", file=notes)
    return ReferenceHead(state=state, frame=ref.frame, analysis=ref)
