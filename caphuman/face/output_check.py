"""Check a generated image against what was asked: the head pose and the identity.

For each output image the face is detected and the head model that drew the hint is fitted to it
with the project's own analysis (:func:`caphuman.face.analysis.analyze_reference`: the dense
MediaPipe fit of :mod:`caphuman.face.dense_fit` on every install, insightface's 68 points when
only they are there); the fitted yaw/pitch/roll (degrees, README conventions) is set
beside the requested pose. The identity similarity to the reference is computed on the detected
faces: ArcFace when the detector supplies embeddings (insightface buffalo_l), else FaceNet (the
CapHuman paper's metric: the generation's own, or the downloaded VGGFace2 weights in
``checkpoints/facenet``); the check says which.

Nothing is reported as a number that was not measured. A note replaces the number when there is
no face in the generated image, when the detector gives no landmarks (OpenCV's last-resort
fallback without MediaPipe: a box or an eye pair does not constrain yaw and pitch), when no head model was given, when the reference
has no face or when no recogniser is available.

Cost per image: one detection and one least-squares fit (plus one FaceNet forward without
ArcFace); the reference's face and embedding are taken from its cached analysis when given one,
else found once per :class:`OutputChecker`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

AXES = ("yaw", "pitch", "roll")
#: Fits that constrain all three angles (MediaPipe's 478 points, 68 landmarks or 5 keypoints).
POSE_FITS = ("mesh478", "landmarks68", "keypoints5")

# Notes are "reason; more" — one-line summaries show the reason only.
NO_FACE = "no face found in the generated image"
NO_HEAD = "precomputed hint: no head model to fit"
FALLBACK_DETECTOR = ("OpenCV fallback detector: no landmarks; a face box or an eye pair does not constrain yaw and "
                     "pitch, so no number is given; MediaPipe (installed by `pip install -r requirements.txt`) "
                     "gives the dense points")
NO_POINTS = ("the detector gave no landmarks or keypoints for this face; a face box or an eye pair does not "
             "constrain yaw and pitch, so no number is given")
ID_NO_FACE = "no face in the generated image"
ID_NO_REFERENCE_FACE = "no face in the reference photo"
ID_NO_RECOGNIZER = ("no face recogniser available; needs the FaceNet weights (`python -m caphuman download "
                    "facenet`) or insightface's buffalo_l pack")


def _angles(pose: Any) -> dict[str, float] | None:
    """yaw/pitch/roll (degrees) of a HeadState, a Pose, a dict or None."""
    if pose is None:
        return None
    pose = getattr(pose, "pose", pose)  # HeadState -> Pose
    if isinstance(pose, dict):
        return {k: float(pose.get(k, 0.0)) for k in AXES}
    return {k: float(getattr(pose, k)) for k in AXES}


def _deg(v: float) -> str:
    s = f"{v:.1f}"
    return "0.0" if s == "-0.0" else s


def _pose_text(p: dict[str, float]) -> str:
    return " ".join(f"{k} {_deg(p[k])}" for k in AXES)


def _reason(note: str) -> str:
    return note.split("; ")[0]


@dataclass
class OutputCheck:
    """What was asked versus what a generated image shows.

    ``requested_pose`` / ``estimated_pose``: {"yaw", "pitch", "roll"} degrees, or None (not asked /
    not estimated; ``pose_note`` says why). ``pose_error``: per-axis absolute difference (degrees)
    when both exist. ``similarity``: cosine identity similarity to the reference in [-1, 1], or None
    (``similarity_note`` says why); ``recognizer``: "arcface", "facenet" or "facenet (weights
    folder)". ``detector``: the face detector used; ``fit``: the fit the detection allowed
    ("landmarks68", "keypoints5", "eyes", "box", "none"); ``faces``: faces found (the largest is
    checked).
    """

    requested_pose: dict[str, float] | None
    estimated_pose: dict[str, float] | None = None
    pose_error: dict[str, float] | None = None
    pose_note: str | None = None
    similarity: float | None = None
    recognizer: str | None = None
    similarity_note: str | None = None
    detector: str | None = None
    fit: str | None = None
    faces: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly (angles to 0.01 degree, similarity to 4 decimals)."""
        rnd = lambda p: None if p is None else {k: round(v, 2) for k, v in p.items()}  # noqa: E731
        return {
            "requested_pose": rnd(self.requested_pose),
            "estimated_pose": rnd(self.estimated_pose),
            "pose_error": rnd(self.pose_error),
            "pose_note": self.pose_note,
            "similarity": None if self.similarity is None else round(self.similarity, 4),
            "recognizer": self.recognizer,
            "similarity_note": self.similarity_note,
            "detector": self.detector,
            "fit": self.fit,
            "faces": self.faces,
        }

    def summary(self) -> str:
        """One line, e.g. ``pose asked yaw 20.0 pitch 0.0 roll 0.0 · estimated yaw 18.3 pitch 1.2
        roll -0.4 · identity 0.62 (arcface)``; a reason in brackets replaces what was not measured."""
        parts = []
        if self.requested_pose is not None:
            parts.append(f"pose asked {_pose_text(self.requested_pose)}")
        if self.estimated_pose is not None:
            parts.append(f"estimated {_pose_text(self.estimated_pose)}")
        else:
            parts.append(f"pose not estimated ({_reason(self.pose_note or 'unknown reason')})")
        if self.similarity is not None:
            parts.append(f"identity {self.similarity:.2f} ({self.recognizer})")
        else:
            parts.append(f"identity n/a ({_reason(self.similarity_note or 'unknown reason')})")
        return " · ".join(parts)


class OutputChecker:
    """Checks generated images against one request.

    ``requested``: the HeadState (or Pose) the hint was rendered from; None when unknown.
    ``target``: the head model to fit: a :class:`caphuman.face.analysis.FitTarget` or a
    :class:`caphuman.preview.HeadPreviewPipeline` (use the one that drew the hint); None: no pose
    estimate. ``reference``: the reference's :class:`~caphuman.face.analysis.ReferenceAnalysis`
    (its detected face and embedding are reused) or the photo itself (path, bytes, array, PIL;
    its face is detected once). ``identity_encoder``: the generation's identity encoder, whose
    FaceNet is used when the detector gives no ArcFace embeddings. ``detector``: a face detector
    (default: ``get_detector("auto")``, the one the analysis uses).
    """

    def __init__(self, requested: Any = None, target: Any = None, reference: Any = None,
                 identity_encoder: Any = None, detector: Any = None):
        self.requested = _angles(requested)
        self.target = target
        self.reference = reference
        self.identity_encoder = identity_encoder
        self.detector = detector
        self._ref: tuple | None = None
        self._ref_vec: dict[int, np.ndarray] = {}

    # ------------------------------------------------------------------ pieces
    def _get_detector(self):
        if self.detector is None:
            from caphuman.face.detection import get_detector

            self.detector, _ = get_detector("auto")
        return self.detector

    def _fit_target(self):
        t = self.target
        if t is None or hasattr(t, "template"):
            return t
        from caphuman.face.analysis import target_for_pipeline

        return target_for_pipeline(t)

    def _reference_face(self):
        """(rgb, Face) of the reference, or None when it has no face (computed once)."""
        if self._ref is None:
            ref = self.reference
            if ref is None:
                self._ref = (None,)
            elif hasattr(ref, "faces") and hasattr(ref, "image"):  # a ReferenceAnalysis
                self._ref = (ref.image, ref.face)
            else:
                from caphuman.errors import NoFaceError
                from caphuman.face.detection import detect_faces
                from caphuman.face.intake import load_image

                rgb = load_image(ref)
                try:
                    self._ref = (rgb, detect_faces(rgb, detector=self._get_detector(), what="the reference photo").face)
                except NoFaceError:
                    self._ref = (None,)
        return None if self._ref[0] is None else self._ref

    def _facenet(self):
        """The identity encoder's FaceNet-convention recogniser and its name, or (None, None)."""
        enc = self.identity_encoder
        if getattr(enc, "facenet", None) is not None:  # caphuman.conditioning.FaceIdentityEncoder
            return enc.facenet, "facenet"
        if getattr(enc, "recognizer", None) is not None:  # a weights folder's identity/ encoder
            return enc.recognizer, "facenet (weights folder)"
        return None, None

    def _identity(self, rgb, face) -> tuple[float | None, str | None, str | None]:
        from caphuman.face.similarity import cosine

        ref = self._reference_face()
        if ref is None:
            return None, None, ID_NO_REFERENCE_FACE
        ref_rgb, ref_face = ref
        if face.embedding is not None and ref_face.embedding is not None:
            return cosine(ref_face.embedding, face.embedding), "arcface", None
        net, name = self._facenet()
        if net is None:
            net, name = _downloaded_facenet()
        if net is None:
            return None, None, ID_NO_RECOGNIZER
        from caphuman.face.facenet import facenet_embedding

        if id(net) not in self._ref_vec:
            self._ref_vec[id(net)] = facenet_embedding(net, ref_rgb, ref_face.box)
        return cosine(self._ref_vec[id(net)], facenet_embedding(net, rgb, face.box)), name, None

    # ------------------------------------------------------------------ the check
    def check(self, image) -> OutputCheck:
        """Check one generated image (PIL, array, path)."""
        from caphuman.errors import NoFaceError
        from caphuman.face.analysis import Encoders, analyze_reference
        from caphuman.face.intake import load_image

        rgb = load_image(image, max_side=None)
        detector = self._get_detector()
        target = self._fit_target()
        out = OutputCheck(requested_pose=self.requested, detector=detector.name)
        try:
            # The same detection + fit as a reference photo (no DECA, no encoders, not cached).
            found = analyze_reference(rgb, min(rgb.shape[:2]), target=target, encoders=Encoders(),
                                      detector=detector, cache=None, what="the generated image", max_side=None)
        except NoFaceError:
            out.pose_note, out.similarity_note, out.fit = NO_FACE, ID_NO_FACE, "none"
            return out
        out.faces, out.fit = len(found.faces), found.fit
        if target is None:
            out.pose_note = NO_HEAD
        elif found.fit in POSE_FITS:
            out.estimated_pose = _angles(found.state)
            if self.requested is not None:
                out.pose_error = {k: abs(out.estimated_pose[k] - self.requested[k]) for k in AXES}
        else:
            out.pose_note = FALLBACK_DETECTOR if found.backend == "opencv" else NO_POINTS
        out.similarity, out.recognizer, out.similarity_note = self._identity(found.image, found.face)
        return out

    def check_all(self, images) -> list[OutputCheck]:
        return [self.check(img) for img in images]


_FACENET: dict[str, Any] = {}


def _downloaded_facenet():
    """The FaceNet (VGGFace2) of ``checkpoints/facenet`` when downloaded, loaded once: (net, name) or (None, None)."""
    from caphuman.weights.registry import file_status, local_path

    if "net" not in _FACENET:
        _FACENET["net"] = None
        try:
            if file_status("facenet").ok:
                from caphuman.face.facenet import load_facenet

                _FACENET["net"] = load_facenet(local_path("facenet"))
        except Exception:  # noqa: BLE001 (a broken file: the check says no recogniser)
            _FACENET["net"] = None
    return (_FACENET["net"], "facenet") if _FACENET["net"] is not None else (None, None)


def check_output(image, requested: Any, reference: Any, target: Any, identity_encoder: Any = None,
                 detector: Any = None) -> OutputCheck:
    """Check one generated image; see :class:`OutputChecker` for the arguments."""
    return OutputChecker(requested, target, reference, identity_encoder, detector).check(image)
