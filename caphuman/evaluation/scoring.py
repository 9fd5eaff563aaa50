"""Score one generated image: identity, text alignment, head control -- a number, or the reason there is none.

* **identity**: cosine of FaceNet embeddings (InceptionResnetV1, VGGFace2: the CapHuman paper's metric) of
  the largest face in the generated image and in the reference photo, each cropped at the project's
  detector box (the paper's MTCNN box differs a little). ArcFace is never used here even when insightface
  is installed: it is not what the paper measured. Without ``checkpoints/facenet``: the weights folder's
  own FaceNet-convention recogniser when it has one (the tiny test model), labelled so; else n/a.
* **text alignment**: :class:`caphuman.evaluation.clip_score.ClipTextScorer` on the whole image and the prompt.
* **head control**: the generated image is analysed exactly as a reference photo is
  (:func:`caphuman.face.analysis.analyze_reference`: detection + fit of the active head model, plus DECA when
  the head is FLAME and ``deca_model.tar`` is present, as in the studio); its fitted state is compared with
  the state the hint was rendered from (the sidecar's ``head_state``): yaw/pitch/roll errors in degrees
  (only for fits that constrain them: :data:`caphuman.face.output_check.POSE_FITS` and DECA), the
  axis-angle RMSE, the RMSE of the *effective* expression coefficients of the active head (raw
  coefficients plus the semantic sliders solved onto the model, what the renderer uses) and of the 9x3
  SH lighting coefficients (only when the fit estimates lighting: DECA; the landmark fits leave it at the
  default light).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caphuman.errors import CapHumanError

AXES = ("yaw", "pitch", "roll")
#: Bump when a score's definition changes: cached scores of another version are recomputed.
SCORE_VERSION = 1


@dataclass
class ImageScore:
    """What one image scored. Every ``*_note`` is None when its number exists, else the reason."""

    detector: str | None = None
    fit: str | None = None
    faces: int = 0
    identity: float | None = None
    identity_note: str | None = None
    clip_cosine: float | None = None
    clip_score: float | None = None
    clip_note: str | None = None
    requested: dict = field(default_factory=dict)
    estimated: dict | None = None
    pose_error: dict | None = None
    pose_aa_rmse: float | None = None
    pose_note: str | None = None
    expression_rmse: float | None = None
    expression_note: str | None = None
    lighting_rmse: float | None = None
    lighting_note: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ImageScore":
        names = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in names})


# ---------------------------------------------------------------------------- embedders
@dataclass
class Embedder:
    """The identity embedder: ``net`` (FaceNet input convention) and its ``name``; or None and ``note``."""

    net: Any = None
    name: str | None = None
    note: str | None = None


def find_facenet(weights: str | os.PathLike | None = None, facenet: str | os.PathLike | None = None,
                 device: str = "cpu") -> Embedder:
    """The paper's FaceNet: ``facenet`` (a path) or the registry's ``checkpoints/facenet/...``; without it, the
    weights folder's ``identity/`` recogniser; else an Embedder with the reason in ``note``."""
    from caphuman.face.facenet import load_facenet
    from caphuman.weights.registry import REGISTRY, file_status, local_path, where_to_get

    if facenet is not None:
        path = Path(facenet).expanduser()
        if not path.is_file():
            return Embedder(note=f"--facenet {facenet}: no such file")
    else:
        path = local_path("facenet") if file_status("facenet").ok else None
    if path is not None:
        try:
            return Embedder(load_facenet(path).to(device), f"facenet (InceptionResnetV1 VGGFace2, {path.name})")
        except CapHumanError as exc:
            return Embedder(note=f"{path} not usable: {exc}")
    if weights is not None and (Path(weights) / "identity" / "identity.json").is_file():
        from caphuman.diffusion.identity import load_identity_encoder

        enc = load_identity_encoder(Path(weights) / "identity", device=device)
        return Embedder(enc.recognizer, "the weights folder's recogniser (identity/identity.json; FaceNet input "
                                        "convention, not the paper's FaceNet unless it is one)")
    return Embedder(note=f"no FaceNet: checkpoints/{REGISTRY['facenet'].path} is missing ({where_to_get('facenet')})")


@dataclass
class ClipChoice:
    scorer: Any = None
    name: str | None = None
    note: str | None = None


def find_clip(clip: str | os.PathLike | None = None, device: str = "cpu") -> ClipChoice:
    """The CLIP model for text alignment: ``clip`` (a folder) or the registry's ``checkpoints/clip-vit-large-patch14``."""
    from caphuman.errors import MissingWeightsError
    from caphuman.evaluation.clip_score import ClipTextScorer
    from caphuman.weights.registry import REGISTRY, local_path, where_to_get

    folder = Path(clip).expanduser() if clip is not None else local_path("clip")
    if clip is None and not folder.is_dir():
        return ClipChoice(note=f"no CLIP: checkpoints/{REGISTRY['clip'].path} is missing ({where_to_get('clip')})")
    try:
        scorer = ClipTextScorer.from_pretrained(folder, device=device)
    except MissingWeightsError as exc:
        return ClipChoice(note=f"no CLIP: {exc}")
    return ClipChoice(scorer, f"clip ({folder.name}: CLIPModel text + vision projections)")


# ---------------------------------------------------------------------------- the scorer
class ImageScorer:
    """Scores generated images. ``pipeline``: the :class:`caphuman.preview.HeadPreviewPipeline` of the head that
    drew the hints; ``embedder`` / ``clip``: from :func:`find_facenet` / :func:`find_clip`; ``detector``: a
    face detector (default ``get_detector("auto")``); ``deca``: a DECA encoder (None: no DECA fit)."""

    def __init__(self, pipeline, embedder: Embedder, clip: ClipChoice, detector=None, deca=None):
        from caphuman.face.analysis import target_for_pipeline

        self.pipeline = pipeline
        self.target = target_for_pipeline(pipeline)
        self.embedder = embedder
        self.clip = clip
        if detector is None:
            from caphuman.face.detection import get_detector

            detector, _ = get_detector("auto")
        self.detector = detector
        self.deca = deca if self.target.kind == "flame" else None
        self._refs: dict[str, tuple[np.ndarray | None, str | None]] = {}
        self.last_fit = None  # the head state fitted to the last image scored (tests, debugging)

    def signature(self) -> str:
        """What decides the scores besides the pixels (cached scores count only while it matches)."""
        return "|".join(str(x) for x in (SCORE_VERSION, self.embedder.name, self.clip.name, self.detector.name,
                                         self.target.name, self.deca is not None))

    # ------------------------------------------------------------------ pieces
    def reference_embedding(self, path: str) -> tuple[np.ndarray | None, str | None]:
        """(FaceNet vector of the reference's face, None) or (None, reason); once per photo."""
        if path not in self._refs:
            if self.embedder.net is None:
                self._refs[path] = (None, self.embedder.note)
            else:
                from caphuman.errors import NoFaceError
                from caphuman.face.detection import detect_faces
                from caphuman.face.facenet import facenet_embedding
                from caphuman.face.intake import load_image

                try:
                    rgb = load_image(path)
                    box = detect_faces(rgb, detector=self.detector, what="the reference photo").face.box
                    self._refs[path] = (facenet_embedding(self.embedder.net, rgb, box), None)
                except NoFaceError:
                    self._refs[path] = (None, "no face found in the reference photo")
                except CapHumanError as exc:
                    self._refs[path] = (None, f"reference photo: {exc}")
        return self._refs[path]

    def _effective(self, state) -> tuple[np.ndarray, np.ndarray]:
        """(effective expression coefficients, 9x3 SH light) the renderer would use for ``state``."""
        params = self.pipeline.params_from_state(state)
        return (params.expression[0].double().numpy(),
                np.asarray(self.pipeline.light_coefficients(state), np.float64).reshape(-1))

    # ------------------------------------------------------------------ one image
    def score(self, image, requested, reference: str, prompt: str) -> ImageScore:
        """Score one image (path / array / PIL). ``requested``: the HeadState its hint was rendered from."""
        from caphuman.errors import NoFaceError
        from caphuman.evaluation import metrics
        from caphuman.face import output_check as oc
        from caphuman.face.analysis import Encoders, analyze_reference
        from caphuman.face.intake import load_image

        rgb = load_image(image, max_side=None)
        out = ImageScore(detector=self.detector.name,
                         requested={k: float(getattr(requested.pose, k)) for k in AXES})
        # text alignment: the whole image, face or no face
        if self.clip.scorer is None:
            out.clip_note = self.clip.note
        else:
            out.clip_cosine = self.clip.scorer.cosine(rgb, prompt)
            out.clip_score = metrics.clip_score(out.clip_cosine)
        try:
            found = analyze_reference(rgb, min(rgb.shape[:2]), target=self.target, encoders=Encoders(deca=self.deca),
                                      detector=self.detector, cache=None, what="the generated image", max_side=None)
        except NoFaceError:
            out.fit = "none"
            out.identity_note = out.pose_note = out.expression_note = out.lighting_note = oc.NO_FACE
            return out
        out.faces, out.fit = len(found.faces), found.fit
        fitted = self.last_fit = found.state

        # identity
        ref_vec, why = self.reference_embedding(reference)
        if ref_vec is None:
            out.identity_note = why
        else:
            from caphuman.face.facenet import facenet_embedding

            out.identity = metrics.cosine(ref_vec, facenet_embedding(self.embedder.net, found.image, found.face.box))

        # pose
        if found.fit in oc.POSE_FITS or found.fit == "deca":
            est = {k: float(getattr(fitted.pose, k)) for k in AXES}
            out.estimated = est
            out.pose_error = {k: abs(est[k] - out.requested[k]) for k in AXES}
            out.pose_aa_rmse = metrics.axis_angle_rmse([out.requested[k] for k in AXES], [est[k] for k in AXES])
        else:
            out.pose_note = oc.FALLBACK_DETECTOR if found.backend == "opencv" else oc.NO_POINTS

        # expression and lighting, as the renderer sees them
        req_e, req_l = self._effective(requested)
        est_e, est_l = self._effective(fitted)
        if fitted.expression or fitted.expression_controls:
            out.expression_rmse = metrics.rmse(req_e, est_e)
        else:
            out.expression_note = f"the {found.fit} fit does not estimate expression (it needs dense landmarks)"
        from caphuman.controls.state import Lighting

        if fitted.lighting.sh is not None or fitted.lighting != Lighting():
            out.lighting_rmse = metrics.rmse(req_l, est_l)
        else:
            out.lighting_note = (f"the {found.fit} fit does not estimate lighting (the DECA fit does: FLAME head + "
                                 "checkpoints/deca/deca_model.tar)")
        return out


__all__ = ["AXES", "ClipChoice", "Embedder", "ImageScore", "ImageScorer", "SCORE_VERSION", "find_clip",
           "find_facenet"]
