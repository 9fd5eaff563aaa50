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
                   modes: Any = ("position", "pose"), notes: Any = "stderr") -> ReferenceHead:
    """Analyse ``reference`` for ``pipeline``'s head model; transfer ``modes`` from ``pose_reference``.

    ``notes``: a stream that receives the analysis warnings (None to stay quiet; default: the
    ``sys.stderr`` of the moment of the call, not of the import).
    """
    if notes == "stderr":
        notes = sys.stderr
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


class FaceIdentityEncoder:
    """Identity inputs for generation from :mod:`caphuman.face` and the files in ``checkpoints/``:
    FaceNet (``facenet/20180402-114759-vggface2.pt``) on the detected face's box, and BiSeNet
    (``face-parsing/79999_iter.pth``) for the face-only image. Same interface as
    :class:`caphuman.diffusion.identity.IdentityEncoder` (``encode_identity``, ``embed``).

    A converted weights folder carries no identity encoders of its own (the tiny test model
    does, in ``identity/``); :func:`identity_encoder_for` picks between the two.
    """

    def __init__(self, root=None):
        from caphuman.errors import MissingWeightsError
        from caphuman.face.analysis import load_encoders
        from caphuman.weights.registry import REGISTRY

        enc = load_encoders(root, clip=False)
        if enc.facenet is None:
            raise MissingWeightsError(
                f"generation needs the FaceNet identity encoder checkpoints/{REGISTRY['facenet'].path} "
                "(see `python -m caphuman doctor`)")
        self.facenet = enc.facenet
        self.parser = enc.parser  # None: the whole photo goes to CLIP (a warning says so)

    def _face_box(self, rgb: np.ndarray):
        from caphuman.errors import NoFaceError
        from caphuman.face.detection import detect_faces

        try:
            return detect_faces(rgb).face.box
        except NoFaceError:
            return None  # whole image, standardised like a crop (the original skipped standardising)

    def embed(self, image) -> Any:
        """(1, 512) unit FaceNet embedding (torch) of the largest face in a PIL image."""
        import torch

        from caphuman.face.facenet import facenet_embedding

        rgb = np.asarray(image.convert("RGB"))
        return torch.from_numpy(facenet_embedding(self.facenet, rgb, self._face_box(rgb)))[None]

    def encode_identity(self, image):
        from PIL import Image

        from caphuman.diffusion.identity import IdentityResult
        from caphuman.face.parsing import face_only, parse_face

        rgb = np.asarray(image.convert("RGB"))
        if self.parser is None:
            print("note: face parser missing: CLIP sees the whole photo, not the face-only image", file=sys.stderr)
            face = rgb
        else:
            face = face_only(rgb, parse_face(self.parser, rgb))
        return IdentityResult(id_embedding=self.embed(image), face_only_image=Image.fromarray(face))


def identity_encoder_for(weights, device: str = "cpu"):
    """The weights folder's own identity encoders (``identity/identity.json``) when present, else
    :class:`FaceIdentityEncoder` on ``checkpoints/`` (raises MissingWeightsError naming the file)."""
    from pathlib import Path

    folder = Path(weights) / "identity"
    if (folder / "identity.json").is_file():
        from caphuman.diffusion.identity import load_identity_encoder

        return load_identity_encoder(folder, device=device)
    return FaceIdentityEncoder()
