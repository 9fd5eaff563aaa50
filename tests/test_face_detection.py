from pathlib import Path

import numpy as np
import pytest

from caphuman.errors import InputError, NoFaceError
from caphuman.face.detection import InsightFaceDetector, OpenCVDetector, detect_faces
from caphuman.face.intake import load_image

from onnx_models import build_pack, white_square_image

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture(scope="module")
def opencv():
    return OpenCVDetector()


@pytest.mark.parametrize("name", ["astronaut.jpg", "grace_hopper.jpg"])
def test_fallback_finds_example_faces(opencv, name):
    img = load_image(EXAMPLES / name)
    det = detect_faces(img, detector=opencv)
    assert det.backend == "opencv" and len(det.faces) == 1
    l, t, r, b = det.face.box
    # the face sits in the upper middle of both portraits
    assert 0.25 * img.shape[1] < (l + r) / 2 < 0.75 * img.shape[1]
    assert (t + b) / 2 < 0.6 * img.shape[0] and r - l > 0.15 * img.shape[1]


def test_two_faces_picks_larger(opencv):
    img = load_image(EXAMPLES / "astronaut.jpg")
    face = img[40:200, 150:300]
    small = np.asarray(__import__("PIL.Image", fromlist=["Image"]).fromarray(face).resize((110, 117)))
    canvas = np.full((260, 420, 3), 128, np.uint8)
    canvas[10:170, 10:160] = face
    canvas[20:137, 250:360] = small
    det = detect_faces(canvas, detector=opencv)
    assert len(det.faces) == 2
    assert det.face.box[0] < 200  # the big one on the left
    assert any("2 faces" in w for w in det.warnings)


def test_two_faces_of_different_sizes_fit_the_larger(opencv):
    """Issue 19: a portrait next to a larger one whose eyes the eye cascade misses."""
    from PIL import Image

    a, b = load_image(EXAMPLES / "astronaut.jpg"), load_image(EXAMPLES / "grace_hopper.jpg")
    a = np.asarray(Image.fromarray(a).resize((a.shape[1] * 600 // a.shape[0], 600)))
    b = np.asarray(Image.fromarray(b).resize((b.shape[1] * 420 // b.shape[0], 420)))
    canvas = np.full((600, a.shape[1] + b.shape[1] + 20, 3), 128, np.uint8)
    canvas[:, :a.shape[1]] = a
    canvas[180:, a.shape[1] + 20:] = b
    det = detect_faces(canvas, detector=opencv)
    largest = max(range(len(det.faces)), key=lambda i: det.faces[i].area)
    assert len(det.faces) >= 2 and det.faces[largest].box[0] > a.shape[1]  # the larger face is Grace Hopper's
    smaller_with_eyes = [f for f in det.faces if f.keypoints is not None and f.area < 0.7 * det.faces[largest].area]
    assert smaller_with_eyes  # the case that used to win
    assert det.chosen == largest


def test_no_face_is_a_clear_error(opencv):
    img = np.full((200, 200, 3), 90, np.uint8)
    with pytest.raises(NoFaceError, match="no face"):
        detect_faces(img, detector=opencv)


def test_insightface_backend_on_tiny_onnx_pack(tmp_path):
    pack = build_pack(tmp_path / "buffalo_l")
    det = InsightFaceDetector(pack)
    assert set(det.app.models) >= {"detection", "recognition", "landmark_3d_68"}
    faces = det.detect(white_square_image())
    assert len(faces) == 1
    f = faces[0]
    # the tiny ONNX graph outputs the box in float32 pixels <= 64 (1 unit = 7.6e-6 px; measured exact):
    # 1e-3 px is ~130 units and 1000x below a one-pixel error
    assert np.allclose(f.box, (32, 32, 64, 64), atol=1e-3) and f.score > 0.9
    assert f.keypoints.shape == (5, 2) and f.landmarks.shape == (68, 2) and f.landmarks_3d.shape == (68, 3)
    # L2-normalised float32 512-vector: the norm's sum rounds to <= log2(512) = 9 units (1.1e-6); 1e-4 = 840
    # units, while an un-normalised embedding is off by O(1)
    assert f.embedding.shape == (512,) and abs(np.linalg.norm(f.embedding) - 1) < 1e-4
    assert f.pose is not None and len(f.pose) == 3
    # landmarks land inside/around the box; the chin is lowest
    assert f.landmarks[8, 1] > f.landmarks[30, 1] > f.landmarks[19, 1]


def test_get_detector_auto_uses_pack(tmp_path, monkeypatch):
    import caphuman.face.detection as detection

    build_pack(tmp_path / "insightface" / "models" / "buffalo_l")
    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path))
    monkeypatch.setattr(detection, "_DETECTORS", {})
    d, notes = detection.get_detector("auto")
    # insightface's faces (ArcFace) with MediaPipe's dense mesh added inside each box
    assert d.name == "insightface+mediapipe" and notes == []
    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path / "nothing"))
    monkeypatch.setattr(detection, "insightface_model_dir", lambda root=None: None)
    d, notes = detection.get_detector("auto")
    assert d.name == "mediapipe" and notes == []
    from caphuman.face import mediapipe_detector

    monkeypatch.setattr(mediapipe_detector, "available", lambda: False)
    d, notes = detection.get_detector("auto")
    assert d.name == "opencv" and "fallback" in notes[0]
    with pytest.raises(InputError, match="MediaPipe is not installed"):
        detection.get_detector("mediapipe")


def test_face_choice_uses_face_evidence_among_main_subjects():
    from caphuman.face.detection import Face, choose_face

    eyes = np.array([[10.0, 10.0], [20.0, 10.0]])
    suit = Face(box=(0, 0, 100, 100), score=9.0)                   # a bare box: no eyes inside
    face = Face(box=(200, 0, 299, 99), score=3.0, keypoints=eyes)  # 99 x 99 with eyes
    assert choose_face([suit, face]) == 1
    big = Face(box=(0, 0, 200, 200), score=2.0, keypoints=eyes)
    tiny = Face(box=(300, 0, 350, 50), score=9.0, keypoints=eyes)  # background face: not a main subject
    assert choose_face([tiny, big]) == 1
    a = Face(box=(0, 0, 100, 100), score=2.0, keypoints=eyes)
    b = Face(box=(200, 0, 292, 92), score=6.0, keypoints=eyes)     # nearly as big, far more confident
    assert choose_face([a, b]) == 1
    marks = Face(box=(0, 0, 110, 110), score=0.9, keypoints=np.zeros((5, 2)), landmarks=np.zeros((68, 2)))
    assert choose_face([Face(box=(0, 0, 120, 120), score=0.95, keypoints=np.zeros((5, 2))), marks]) == 1
    # a clearly larger face wins over a smaller one whose eyes were found (the eye cascade misses eyes)
    large_bare = Face(box=(300, 0, 460, 160), score=8.0)  # 160 x 160
    small_eyes = Face(box=(0, 0, 110, 110), score=3.0, keypoints=eyes)  # 110^2 / 160^2 = 0.47 < 0.7
    assert choose_face([small_eyes, large_bare]) == 1


def test_group_photo_picks_the_face_with_eyes():
    import insightface

    from caphuman.face.detection import OpenCVDetector, detect_faces
    from caphuman.face.intake import load_image

    img = load_image(Path(insightface.__file__).parent / "data" / "images" / "t1.jpg")
    det = detect_faces(img, detector=OpenCVDetector(max_side=2000))
    assert len(det.faces) >= 3 and det.face.keypoints is not None
    assert sum(f.keypoints is not None for f in det.faces) >= 1
    assert any("faces found" in w for w in det.warnings)
