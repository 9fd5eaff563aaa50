"""Checks of generated images (caphuman.face.output_check): pose asked vs estimated and identity,
with a reason instead of a number whenever nothing was measured; CLI sidecar/stdout and studio caption."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from caphuman.controls.state import HeadState, Pose
from caphuman.face import output_check as oc
from caphuman.face.detection import Face, OpenCVDetector
from caphuman.face.intake import load_image

from diffusion_fixtures import tiny_dir  # noqa: F401

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"


@pytest.fixture
def opencv_only(monkeypatch):
    """A default install: no insightface buffalo_l pack (the detector is MediaPipe's)."""
    import caphuman.face.detection as detection

    monkeypatch.setattr(detection, "insightface_model_dir", lambda root=None: None)
    monkeypatch.setattr(detection, "_DETECTORS", {})


class LandmarkDetector:
    """A detector that 'finds' one face with given 68 landmarks (pixels)."""

    name = "landmarks-under-test"

    def __init__(self, landmarks: np.ndarray):
        self.landmarks = np.asarray(landmarks, np.float64)

    def detect(self, rgb):
        lm = self.landmarks
        return [Face(box=(*lm.min(0), *lm.max(0)), score=0.99, landmarks=lm)]


class FaceNetOnly:
    """Stands in for the generation's identity encoder (only its ``facenet`` is used)."""

    def __init__(self):
        import torch

        from caphuman.face.facenet import InceptionResnetV1

        torch.manual_seed(0)
        self.facenet = InceptionResnetV1(width=0.0625, blocks=(1, 1, 1), num_classes=None).eval()


def _posed_landmarks(pipeline, yaw, pitch=0.0, roll=0.0, size=256):
    """The head's 68 landmarks in image pixels, posed and projected by the preview renderer (head
    forward with skinning and the yaw-dependent jaw contour), not by the fit's own model."""
    return pipeline.render(HeadState(pose=Pose(yaw, pitch, roll)), size).landmarks_px


# ----------------------------------------------------------------------------- pose estimate
@pytest.mark.parametrize("yaw, pitch, roll", [(25, 0, 0), (-25, 0, 0), (15, -10, 8)])
def test_pose_estimated_from_landmarks_of_a_known_pose(builtin_pipeline, yaw, pitch, roll):
    lm = _posed_landmarks(builtin_pipeline, yaw, pitch, roll)
    blank = np.zeros((256, 256, 3), np.uint8)
    check = oc.check_output(blank, HeadState(pose=Pose(yaw, pitch, roll)), None, builtin_pipeline,
                            detector=LandmarkDetector(lm))
    est = check.estimated_pose
    assert check.fit == "landmarks68" and check.pose_note is None
    assert np.sign(est["yaw"]) == np.sign(yaw)
    # fit accuracy (the check's fitter re-fits landmarks of the built-in head: its own model bias), not
    # rounding; 3 degrees is the check's stated resolution, a sign error is 50 degrees off
    assert (est["yaw"], est["pitch"], est["roll"]) == pytest.approx((yaw, pitch, roll), abs=3.0)
    # the same float64 numbers subtracted: approx's default rel 1e-6 only absorbs the repr of the floats
    assert check.pose_error == pytest.approx({k: abs(est[k] - v) for k, v in zip(oc.AXES, (yaw, pitch, roll))})
    line = check.summary()
    assert line.startswith(f"pose asked yaw {yaw:.1f} pitch {pitch:.1f} roll {roll:.1f} · estimated yaw ")
    assert "identity n/a (no face in the reference photo)" in line  # no reference given


def test_pose_check_catches_the_wrong_pose(builtin_pipeline):
    """Asked for yaw -25, the image shows +25: the error says so."""
    lm = _posed_landmarks(builtin_pipeline, 25)
    check = oc.check_output(np.zeros((256, 256, 3), np.uint8), Pose(yaw=-25), None, builtin_pipeline,
                            detector=LandmarkDetector(lm))
    assert check.requested_pose["yaw"] == -25 and check.estimated_pose["yaw"] > 20
    assert check.pose_error["yaw"] > 45


@pytest.mark.parametrize("yaw", [25, -25])
def test_pose_check_through_insightface_with_arcface(builtin_pipeline, tmp_path, yaw):
    """The insightface backend end to end (tiny ONNX pack whose landmark graph returns the built-in
    head's landmarks at a known yaw): pose estimated with the right sign, identity by ArcFace."""
    from caphuman.face.detection import InsightFaceDetector
    from onnx_models import build_pack, layout_for_pixels, white_square_image

    ndc = builtin_pipeline.pose(HeadState(pose=Pose(yaw=yaw))).landmarks_ndc[:, :2]
    k = 30.0 / np.ptp(ndc[:, 0])  # about as wide as the detected 32-pixel box
    pixels = np.stack([48 + k * ndc[:, 0], 48 - k * ndc[:, 1]], 1)  # box centre (48, 48), y down
    det = InsightFaceDetector(build_pack(tmp_path / "buffalo_l", layout_for_pixels(pixels)))
    image = white_square_image()
    # the graph does what we asked: float32 constants in ONNX (pixels <= 68: 1 unit = 8e-6 px; measured
    # 3.8e-6) mapped back through insightface's crop transform; 0.05 px is far below a 1 px landmark error
    assert np.allclose(det.detect(image)[0].landmarks, pixels, atol=0.05)

    check = oc.OutputChecker(HeadState(pose=Pose(yaw=yaw)), builtin_pipeline, image, detector=det).check(image)
    assert check.detector == "insightface" and check.fit == "landmarks68"
    assert np.sign(check.estimated_pose["yaw"]) == np.sign(yaw)
    assert check.estimated_pose["yaw"] == pytest.approx(yaw, abs=3.0)
    # the same image as reference and output: identical float32 embeddings, float64 cosine 1 - 1e-12;
    # the summary prints 2 decimals, 1e-4 keeps it "1.00"
    assert check.recognizer == "arcface" and check.similarity == pytest.approx(1.0, abs=1e-4)
    assert check.summary().endswith("· identity 1.00 (arcface)")


# ----------------------------------------------------------------------------- no number without a measurement
def test_fallback_detector_says_not_estimated(builtin_pipeline):
    """OpenCV finds the astronaut's face and eyes: no yaw/pitch number, a reason instead; the
    identity is still measured (FaceNet on both detected faces)."""
    photo = EXAMPLES / "astronaut.jpg"
    checker = oc.OutputChecker(HeadState(pose=Pose(yaw=20)), builtin_pipeline, photo,
                               identity_encoder=FaceNetOnly(), detector=OpenCVDetector())
    check = checker.check(photo)
    assert check.fit in ("eyes", "box") and check.detector == "opencv"
    assert check.estimated_pose is None and check.pose_error is None
    assert check.pose_note == oc.FALLBACK_DETECTOR and "MediaPipe" in check.pose_note
    assert check.recognizer == "facenet" and check.similarity == pytest.approx(1.0, abs=1e-4)  # same photo: as above
    assert check.summary() == ("pose asked yaw 20.0 pitch 0.0 roll 0.0 · pose not estimated (OpenCV fallback "
                               "detector: no landmarks) · identity 1.00 (facenet)")
    d = check.to_dict()
    assert d["estimated_pose"] is None and d["pose_note"] == oc.FALLBACK_DETECTOR and d["similarity"] == 1.0


def test_no_face_gives_notes_not_numbers(builtin_pipeline):
    noise = np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    checker = oc.OutputChecker(Pose(yaw=10), builtin_pipeline, EXAMPLES / "astronaut.jpg",
                               identity_encoder=FaceNetOnly(), detector=OpenCVDetector())
    check = checker.check(noise)
    assert check.estimated_pose is None and check.pose_note == oc.NO_FACE and check.faces == 0
    assert check.similarity is None and check.similarity_note == oc.ID_NO_FACE and check.recognizer is None
    assert check.summary() == ("pose asked yaw 10.0 pitch 0.0 roll 0.0 · pose not estimated (no face found in the "
                               "generated image) · identity n/a (no face in the generated image)")
    # a reference without a face, or no recogniser: still no number
    grey = np.full((120, 120, 3), 90, np.uint8)
    photo = EXAMPLES / "astronaut.jpg"
    c = oc.check_output(photo, None, grey, None, FaceNetOnly(), detector=OpenCVDetector())
    assert c.similarity is None and c.similarity_note == oc.ID_NO_REFERENCE_FACE
    assert c.requested_pose is None and c.pose_note == oc.NO_HEAD
    assert c.summary().startswith("pose not estimated (precomputed hint: no head model to fit) · ")
    c = oc.check_output(photo, None, photo, None, None, detector=OpenCVDetector())
    assert c.similarity is None and c.similarity_note == oc.ID_NO_RECOGNIZER


def test_default_install_estimates_pose_and_says_the_embedder(builtin_pipeline, opencv_only):
    """No insightface: the default (MediaPipe) detector gives a pose number for a real face, and the
    identity is FaceNet's, named as such. The 'generated image' is the example photo turned by a
    known amount: its mirror image must give the negated yaw and roll (independent of the truth)."""
    from caphuman.face.detection import get_detector

    det, _ = get_detector("auto")
    assert det.name == "mediapipe"
    photo = load_image(EXAMPLES / "grace_hopper.jpg")
    check = oc.OutputChecker(HeadState(pose=Pose(yaw=0)), builtin_pipeline, photo,
                             identity_encoder=FaceNetOnly()).check(photo)
    assert check.fit == "mesh478" and check.detector == "mediapipe" and check.estimated_pose is not None
    assert abs(check.estimated_pose["yaw"]) < 10 and check.pose_error is not None
    assert check.recognizer == "facenet" and check.similarity == pytest.approx(1.0, abs=1e-4)
    assert check.summary().endswith("· identity 1.00 (facenet)") and "estimated yaw" in check.summary()
    flipped = oc.OutputChecker(None, builtin_pipeline, photo).check(np.ascontiguousarray(photo[:, ::-1]))
    # The points are mirror-averaged inside a crop centred on the mesh (mediapipe_detector), so
    # what remains is the network's response to a crop shifted by pixel rounding: the issue's
    # mirror target, 1.5 degrees (a sign error would be ~2x the yaw; a missing flip in the fit 0).
    assert flipped.estimated_pose["yaw"] == pytest.approx(-check.estimated_pose["yaw"], abs=1.5)
    assert flipped.estimated_pose["roll"] == pytest.approx(-check.estimated_pose["roll"], abs=1.5)


# ----------------------------------------------------------------------------- CLI and studio
def test_cli_generate_writes_checks(tiny_dir, tmp_path, capsys, opencv_only):  # noqa: F811
    """Tiny random model (noise images): the sidecar says why nothing was measured; no 'identity 1.00'."""
    from caphuman.__main__ import main

    out = tmp_path / "o.png"
    rc = main(["generate", "--weights", str(tiny_dir), "--reference", str(EXAMPLES / "astronaut.jpg"),
               "--prompt", "a portrait", "--yaw", "20", "--pitch", "-5", "--steps", "1", "--size", "64",
               "--seed", "1", "--num-images", "2", "--device", "cpu", "--out", str(out)])
    assert rc == 0
    side = json.loads(out.with_suffix(".json").read_text())
    assert [c["image"] for c in side["checks"]] == side["images"]
    for c in side["checks"]:
        assert c["requested_pose"]["yaw"] == 20.0 and c["requested_pose"]["pitch"] == -5.0
        assert c["estimated_pose"] is None and c["pose_error"] is None and c["pose_note"] == oc.NO_FACE
        assert c["similarity"] is None and c["recognizer"] is None and c["similarity_note"] == oc.ID_NO_FACE
        assert c["detector"] == "mediapipe"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{tmp_path / 'o_0.png'}  pose asked yaw 20.0 pitch -5.0 roll ")
    assert lines[0].endswith("· pose not estimated (no face found in the generated image) · "
                             "identity n/a (no face in the generated image)")


def test_studio_caption_shows_the_check(tiny_dir, head_path, opencv_only):  # noqa: F811
    """The studio passes the head state it rendered the hint from; the caption checks against it."""
    from caphuman.face.intake import load_image
    from caphuman.studio.generation import GenerationParams
    from caphuman.studio.service import StudioService

    svc = StudioService(head=head_path, weights=str(tiny_dir), device="cpu")
    state = HeadState(pose=Pose(yaw=30))
    params = GenerationParams(prompt="a portrait", seed=5, steps=1, resolution=64)
    images, _ = svc.generate(load_image(EXAMPLES / "astronaut.jpg"), state, params)
    assert images[0].caption == ("seed 5 · pose asked yaw 30.0 pitch 0.0 roll 0.0 · pose not estimated (no face "
                                 "found in the generated image) · identity n/a (no face in the generated image)")
    assert images[0].check.similarity is None and images[0].check.fit == "none"
