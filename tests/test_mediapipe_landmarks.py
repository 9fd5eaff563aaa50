"""MediaPipe detection + dense points on real photos, the shipped correspondence, body points."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from caphuman.errors import NoFaceError
from caphuman.face.detection import detect_faces, get_detector
from caphuman.face.intake import load_image

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture(scope="module")
def mp_detector():
    return get_detector("mediapipe")[0]


def insightface_image(name: str) -> np.ndarray:
    import insightface

    return load_image(Path(insightface.__file__).parent / "data" / "images" / name)


@pytest.mark.parametrize("name", ["astronaut.jpg", "grace_hopper.jpg"])
def test_one_face_with_478_points(mp_detector, name):
    rgb = load_image(EXAMPLES / name)
    det = detect_faces(rgb, detector=mp_detector)
    f = det.face
    assert len(det.faces) == 1 and det.backend == "mediapipe" and f.mesh.shape == (478, 3)
    l, t, r, b = f.box
    assert 0 <= l < r <= rgb.shape[1] and 0 <= t < b <= rgb.shape[0]
    assert np.all((f.mesh[:, 0] >= l - 2) & (f.mesh[:, 0] <= r + 2))
    # keypoints: image-left eye first, nose between the eyes, mouth below the nose (rows grow down)
    kp = f.keypoints
    assert kp[0, 0] < kp[2, 0] < kp[1, 0] and kp[3, 1] > kp[2, 1] > kp[0, 1]


def test_mirrored_photo_gives_mirrored_points(mp_detector):
    """Points are averaged with the mirrored crop's (module docstring): the flipped photo's points
    are the photo's, mirrored and re-indexed, to about a pixel (the crops differ by rounding)."""
    from caphuman.face.mesh_embedding import mediapipe_mirror

    rgb = load_image(EXAMPLES / "grace_hopper.jpg")
    W = rgb.shape[1]
    a = mp_detector.detect(rgb)[0].mesh
    b = mp_detector.detect(np.ascontiguousarray(rgb[:, ::-1]))[0].mesh
    m = mediapipe_mirror()
    known = m >= 0
    back = b[m[known], :2].copy()
    back[:, 0] = W - back[:, 0]
    err = np.linalg.norm(back - a[known, :2], axis=1)
    face_w = np.ptp(a[:468, 0])
    assert np.median(err) < 0.01 * face_w and known.sum() > 350


def test_group_photo_and_a_tiny_face(mp_detector):
    det = detect_faces(insightface_image("t1.jpg"), detector=mp_detector)
    assert len(det.faces) >= 4 and sum(f.mesh is not None for f in det.faces) >= 4
    assert any("faces found" in w for w in det.warnings) and det.face.mesh is not None
    # a face ~35 pixels wide in a 1600-pixel photo (found on a tile; the mesh runs on an upsampled crop)
    from PIL import Image

    face = Image.open(EXAMPLES / "grace_hopper.jpg").convert("RGB").resize((90, 105))
    canvas = Image.new("RGB", (1600, 1200), (120, 130, 140))
    canvas.paste(face, (1200, 300))
    f = detect_faces(np.asarray(canvas), detector=mp_detector).face
    assert f.mesh is not None and 1200 < f.box[0] < f.box[2] < 1290 and 300 < f.box[1] < f.box[3] < 405


def test_no_face_and_odd_images(mp_detector):
    noise = np.random.default_rng(0).integers(0, 255, (300, 300, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError, match="no face found.*mediapipe"):
        detect_faces(noise, detector=mp_detector)
    assert mp_detector.detect(np.zeros((1, 1, 3), np.uint8)) == []
    assert mp_detector.detect(np.zeros((5000, 3, 3), np.uint8)) == []


def test_shipped_embedding_matches_the_builtin_head(builtin_head):
    from caphuman.face.mesh_embedding import ASSET, MeshEmbedding, allowed_part, model_key, triangle_parts

    emb = MeshEmbedding.load(ASSET)
    assert emb.model_key == model_key(builtin_head)  # rebuild: python -m caphuman.face.mesh_embedding
    assert (emb.weight > 0).sum() >= 400
    parts = triangle_parts(builtin_head)
    used = emb.weight > 0
    for k in np.flatnonzero(used):
        assert int(emb.faces[k]) in parts[allowed_part(int(k))], k
    # the mirror map is an involution and pairs points across the midline
    m = emb.mirror
    known = m >= 0
    assert np.all(m[m[known]] == np.flatnonzero(known))
    P = emb.points(builtin_head.v_template, builtin_head.f)
    pairs = known & (m != np.arange(len(m)))
    assert np.abs(P[pairs, 0] + P[m[pairs], 0]).max() < 1e-3  # symmetric to a millimetre
    assert np.all(np.sign(P[pairs, 0]) == -np.sign(P[m[pairs], 0]))


def test_transfer_to_a_flame_layout_model(builtin_head):
    """Another topology: the points move by the 68-landmark warp onto that surface (here the
    synthetic FLAME-layout head, whose face is the synthetic sphere head's)."""
    from flame_fixtures import flame_layout_head

    from caphuman.face.mesh_embedding import embedding_for, triangle_parts

    flame = flame_layout_head()
    emb = embedding_for(flame)
    assert emb.model_key != embedding_for(builtin_head).model_key and "transferred" in emb.source
    P = emb.points(flame.v_template, flame.f)
    assert np.all(np.isfinite(P))
    lm = flame.v_template[np.asarray(flame.f)[flame.full_lmk_faces_idx]].mean(1)
    # the points cover the face region of the landmarks (not collapsed, not elsewhere)
    lo, hi = lm.min(0), lm.max(0)
    span = hi - lo
    inside = np.all((P[:, :2] > lo[:2] - 0.25 * span[:2]) & (P[:, :2] < hi[:2] + 0.25 * span[:2]), axis=1)
    assert inside.mean() > 0.9
    assert set(emb.faces[468:].tolist()) <= triangle_parts(flame)["eyeball"] or not triangle_parts(flame)["eyeball"]


def test_analysis_reports_detector_landmarker_and_body(builtin_pipeline):
    from caphuman.face.analysis import analyze_reference, target_for_pipeline

    an = analyze_reference(EXAMPLES / "astronaut.jpg", 256, target=target_for_pipeline(builtin_pipeline), cache=None)
    d = an.to_dict()
    assert d["detector"] in ("mediapipe", "insightface+mediapipe") and d["fit"] == "mesh478"
    assert d["landmarker"] == "mediapipe face mesh (478 points)" and d["reprojection_face_width"] < 0.03
    body = an.body()
    assert body.found and body.body.shape == (33, 3)
    op = body.openpose18()
    # the astronaut's shoulders are in the photo, below her nose; the neck between the shoulders
    assert op[0, 2] > 0 and op[2, 2] > 0 and op[5, 2] > 0
    assert op[2, 1] > op[0, 1] and op[1, 0] == pytest.approx((op[2, 0] + op[5, 0]) / 2)


def test_openpose18_order_on_synthetic_points():
    """The MediaPipe-33 -> OpenPose-18 re-ordering against a hand-written table of the two conventions."""
    from caphuman.face.body import BodyPose

    body = np.stack([np.arange(33) * 10.0, np.arange(33) * 10.0 + 1, np.zeros(33)], axis=1)
    vis = np.ones(33)
    vis[27] = 0.1  # the left ankle was not seen
    op = BodyPose(body=body, visibility=vis, size=(400, 400)).openpose18()
    expect = {"nose": 0, "right_shoulder": 12, "right_elbow": 14, "right_wrist": 16, "left_shoulder": 11,
              "left_elbow": 13, "left_wrist": 15, "right_hip": 24, "right_knee": 26, "right_ankle": 28,
              "left_hip": 23, "left_knee": 25, "right_eye": 5, "left_eye": 2, "right_ear": 8, "left_ear": 7}
    from caphuman.face.body import OPENPOSE18_NAMES

    for name, mp in expect.items():
        i = OPENPOSE18_NAMES.index(name)
        assert op[i, 0] == mp * 10.0 and op[i, 2] == 1.0, name
    assert op[1, 0] == pytest.approx((110 + 120) / 2) and op[OPENPOSE18_NAMES.index("left_ankle"), 2] == 0.0
    assert BodyPose(body=None, visibility=None).openpose18().sum() == 0


def test_no_body_in_a_blank_image():
    from caphuman.face.body import detect_body

    res = detect_body(np.full((200, 200, 3), 128, np.uint8))
    assert res is not None and not res.found and res.hands == []
