"""Body and hand points of a photo, offline (MediaPipe Pose + Hands, models inside the wheel).

For the body-pose control: :func:`detect_body` gives MediaPipe's 33 body points and up to two
hands of 21 points; :meth:`BodyPose.openpose18` re-orders the body into the OpenPose/COCO
18-keypoint convention the SD1.5 OpenPose ControlNet was trained on (the neck is the mid-point
of the shoulders, as OpenPose defines it).

Coordinates: photo pixels (x = column, y = row, continuous, origin top-left); ``visibility`` in
[0, 1]. MediaPipe's "left" is the subject's left (the image's right for a person facing the camera).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

#: OpenPose 18 order as MediaPipe Pose indices (-1: the neck, the shoulders' mid-point).
OPENPOSE18_FROM_MP33 = (0, -1, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7)
OPENPOSE18_NAMES = ("nose", "neck", "right_shoulder", "right_elbow", "right_wrist", "left_shoulder",
                    "left_elbow", "left_wrist", "right_hip", "right_knee", "right_ankle", "left_hip",
                    "left_knee", "left_ankle", "right_eye", "left_eye", "right_ear", "left_ear")
#: A body point counts as found at or above this visibility.
MIN_VISIBILITY = 0.5


@dataclass
class Hand:
    """21 hand points (21, 3): x, y pixels, z relative depth (pixels, larger = farther);
    ``side``: "left" / "right" (the subject's); ``score`` in [0, 1]."""

    points: np.ndarray
    side: str
    score: float


@dataclass
class BodyPose:
    """``body``: (33, 3) x, y, z pixels or None (no body found); ``visibility`` (33,);
    ``hands``: found hands; ``size``: (width, height) of the photo."""

    body: np.ndarray | None
    visibility: np.ndarray | None
    hands: list[Hand] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)

    @property
    def found(self) -> bool:
        return self.body is not None

    def openpose18(self) -> np.ndarray:
        """(18, 3) x, y pixels and a confidence in [0, 1] (0 = not found) in OpenPose order."""
        out = np.zeros((18, 3))
        if self.body is None:
            return out
        for i, j in enumerate(OPENPOSE18_FROM_MP33):
            if j >= 0:
                out[i, :2], out[i, 2] = self.body[j, :2], self.visibility[j]
            else:
                out[i, :2] = (self.body[11, :2] + self.body[12, :2]) / 2.0
                out[i, 2] = min(self.visibility[11], self.visibility[12])
        out[out[:, 2] < MIN_VISIBILITY, 2] = 0.0
        return out

    def to_dict(self) -> dict:
        r = lambda a: None if a is None else np.round(np.asarray(a, np.float64), 2).tolist()  # noqa: E731
        return {"body": r(self.body), "visibility": r(self.visibility), "openpose18": r(self.openpose18()),
                "hands": [{"side": h.side, "score": round(h.score, 3), "points": r(h.points)} for h in self.hands]}


_LOCK = threading.Lock()
_MODELS: dict[str, object] = {}


def _models():
    from mediapipe.python.solutions import hands, pose

    if not _MODELS:
        # model_complexity=1: pose_landmark_full / hand_landmark_full ship in the wheel (0 and 2 would download).
        _MODELS["pose"] = pose.Pose(static_image_mode=True, model_complexity=1, enable_segmentation=False)
        _MODELS["hands"] = hands.Hands(static_image_mode=True, max_num_hands=2, model_complexity=1)
    return _MODELS["pose"], _MODELS["hands"]


def detect_body(rgb: np.ndarray) -> BodyPose | None:
    """Body (33 points) and hands (21 each) of the main person in an RGB uint8 photo; None when
    MediaPipe is not installed. A photo with no person gives ``BodyPose(body=None, ...)``."""
    from caphuman.face import mediapipe_detector

    if not mediapipe_detector.available():
        return None
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3], dtype=np.uint8)
    h, w = rgb.shape[:2]
    with _LOCK:
        pose_model, hands_model = _models()
        res = pose_model.process(rgb)
        hres = hands_model.process(rgb)
    body = vis = None
    if res.pose_landmarks is not None:
        lm = res.pose_landmarks.landmark
        body = np.array([(p.x * w, p.y * h, p.z * w) for p in lm], np.float64)
        vis = np.array([p.visibility for p in lm], np.float64)
    hands_out = []
    for pts, handed in zip(hres.multi_hand_landmarks or [], hres.multi_handedness or []):
        c = handed.classification[0]
        arr = np.array([(p.x * w, p.y * h, p.z * w) for p in pts.landmark], np.float64)
        # MediaPipe labels handedness as seen in a mirrored (selfie) image: swap for a photo.
        side = {"Left": "right", "Right": "left"}.get(c.label, c.label.lower())
        hands_out.append(Hand(points=arr, side=side, score=float(c.score)))
    return BodyPose(body=body, visibility=vis, hands=hands_out, size=(w, h))
