"""``python -m caphuman evaluate``: the metric functions against independent computations, the per-image
scorer on a head with known landmarks, bad material named by file, and the whole command end to end on
the tiny model (noise images: the numbers mean nothing, the plumbing, CSV, resume, summary and plot must
be right)."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from caphuman.controls.state import HeadState, Pose
from caphuman.evaluation import metrics

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT / "assets" / "examples" / "astronaut.jpg"
HOPPER = ROOT / "assets" / "examples" / "grace_hopper.jpg"


def _main(*args) -> int:
    from caphuman.__main__ import main

    return main([str(a) for a in args])


# ----------------------------------------------------------------------------- metric functions
def test_cosine_matches_the_definition():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=512), rng.normal(size=512)
    by_hand = sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))
    # float64 sums of 512 products of O(1) numbers: agreement to ~1e-15; 1e-12 leaves room for summation order.
    assert metrics.cosine(a, b) == pytest.approx(by_hand, abs=1e-12)
    assert metrics.cosine(3.0 * a, 0.5 * a) == pytest.approx(1.0, abs=1e-12)  # scale does not matter
    assert metrics.cosine(a, -a) == pytest.approx(-1.0, abs=1e-12)
    assert metrics.cosine(a, np.zeros(512)) == 0.0
    with pytest.raises(ValueError):
        metrics.cosine(a, b[:10])


def test_clip_score_is_clip_s():
    assert metrics.clip_score(0.3345) == pytest.approx(2.5 * 0.3345)
    assert metrics.clip_score(-0.2) == 0.0  # clipped at 0, as CLIP-S is
    assert metrics.CLIP_S_WEIGHT == 2.5


@pytest.mark.parametrize("yaw, label", [(0, "0-15"), (14.99, "0-15"), (15, "15-30"), (-15, "15-30"),
                                        (-29.9, "15-30"), (30, "30-45"), (44.9, "30-45"), (45, "45+"),
                                        (-90, "45+")])
def test_yaw_bins_are_half_open_on_abs_yaw(yaw, label):
    assert metrics.yaw_bin(yaw) == label


def test_custom_yaw_bins_and_their_parsing():
    edges = metrics.parse_edges("10,20")
    assert metrics.yaw_bin_labels(edges) == ["0-10", "10-20", "20+"]
    assert metrics.yaw_bin(19.5, edges) == "10-20" and metrics.yaw_bin(-25, edges) == "20+"
    from caphuman.errors import InputError

    for bad in ("", "30,15", "a,b", "-5,10", "15,15"):
        with pytest.raises(InputError, match="--yaw-bins"):
            metrics.parse_edges(bad)


def test_rmse_and_the_axis_angle_pose_rmse():
    a, b = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 4.0]
    assert metrics.rmse(a, b) == pytest.approx(math.sqrt((0.25 + 0 + 1 + 0) / 4))
    with pytest.raises(ValueError):
        metrics.rmse(a, b[:3])
    # A pure yaw of 10 degrees is a rotation about the y axis: axis-angle (0, 10 deg in rad, 0) against zero.
    assert metrics.axis_angle_rmse((10, 0, 0), (0, 0, 0)) == pytest.approx(math.radians(10) / math.sqrt(3), rel=1e-9)
    # Pitch and roll the same way (x and z axes, sign conventions do not change an RMSE against zero).
    assert metrics.axis_angle_rmse((0, -20, 0), (0, 0, 0)) == pytest.approx(math.radians(20) / math.sqrt(3), rel=1e-9)
    assert metrics.axis_angle_rmse((12, -7, 3), (12, -7, 3)) == pytest.approx(0.0, abs=1e-12)


def test_stats_skip_missing_values():
    s = metrics.stats([1.0, None, 3.0, float("nan"), 8.0])
    assert s["count"] == 3 and s["mean"] == pytest.approx(4.0) and s["median"] == 3.0
    assert metrics.stats([None])["mean"] is None and metrics.stats([])["count"] == 0


# ----------------------------------------------------------------------------- CLIP score
@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from caphuman.testing.tiny_clip import write_tiny_clip

    return write_tiny_clip(tmp_path_factory.mktemp("clip") / "clip")


def test_clip_cosine_equals_an_independent_computation(tiny_clip):
    """CLS token -> post_layernorm -> visual_projection and EOS token -> text_projection, by hand."""
    import torch
    from transformers import CLIPModel, CLIPTokenizer

    from caphuman.evaluation.clip_score import ClipTextScorer
    from caphuman.face.clip_image import clip_pixels

    scorer = ClipTextScorer.from_pretrained(tiny_clip)
    model = CLIPModel.from_pretrained(str(tiny_clip)).eval()
    tok = CLIPTokenizer.from_pretrained(str(tiny_clip))
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (80, 64, 3), dtype=np.uint8)
    prompt = "a photo of a person smiling"
    with torch.no_grad():
        hidden = model.vision_model(pixel_values=torch.from_numpy(clip_pixels(image, 32))).last_hidden_state
        img = model.visual_projection(model.vision_model.post_layernorm(hidden[:, 0]))[0].numpy()
        ids = tok([prompt], return_tensors="pt")["input_ids"]
        text_hidden = model.text_model(input_ids=ids).last_hidden_state
        eos = int((ids[0] == tok.eos_token_id).nonzero()[0])
        txt = model.text_projection(text_hidden[0, eos])
    expected = float(np.dot(img, txt.numpy()) / (np.linalg.norm(img) * np.linalg.norm(txt.numpy())))
    # Same float32 forward passes on the same inputs; 1e-5 covers the float32 dot products of 16 numbers.
    assert scorer.cosine(image, prompt) == pytest.approx(expected, abs=1e-5)
    assert abs(expected) > 1e-3  # a random model gives some non-zero cosine: the check is not vacuous
    assert scorer.cosine(image, "a portrait") != pytest.approx(expected, abs=1e-5)  # the text matters


def test_a_clip_folder_without_a_projection_is_refused(tiny_clip, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    from caphuman.errors import MissingWeightsError
    from caphuman.evaluation.clip_score import ClipTextScorer
    from caphuman.evaluation.scoring import find_clip

    broken = tmp_path / "clip"
    shutil.copytree(tiny_clip, broken)
    sd = load_file(broken / "model.safetensors")
    save_file({k: v for k, v in sd.items() if not k.startswith("text_projection")}, str(broken / "model.safetensors"),
              metadata={"format": "pt"})
    with pytest.raises(MissingWeightsError, match="text_projection"):
        ClipTextScorer.from_pretrained(broken)
    choice = find_clip(broken)
    assert choice.scorer is None and "text_projection" in choice.note
    assert "not found" in find_clip(tmp_path / "nowhere").note


# ----------------------------------------------------------------------------- the per-image scorer
class LandmarkDetector:
    """'Finds' one face with the given 68 landmarks (pixels) in any image."""

    name = "landmarks-under-test"

    def __init__(self, landmarks):
        self.landmarks = np.asarray(landmarks, np.float64)

    def detect(self, rgb):
        from caphuman.face.detection import Face

        lm = self.landmarks
        return [Face(box=(*lm.min(0), *lm.max(0)), score=0.99, landmarks=lm)]


@pytest.fixture(scope="module")
def tiny_facenet():
    import torch

    from caphuman.evaluation.scoring import Embedder
    from caphuman.face.facenet import InceptionResnetV1

    torch.manual_seed(0)
    return Embedder(InceptionResnetV1(width=0.0625, blocks=(1, 1, 1), num_classes=None).eval(), "facenet (tiny)")


def test_scorer_measures_pose_expression_and_identity(builtin_pipeline, tiny_facenet, tmp_path):
    from PIL import Image

    from caphuman.evaluation.scoring import ClipChoice, ImageScorer

    shown = HeadState(pose=Pose(yaw=25, pitch=-5), expression_controls={"smile": 0.6})
    render = builtin_pipeline.render(shown, 256)
    image = render.preview
    photo = tmp_path / "ref.png"
    Image.fromarray(image).save(photo)
    scorer = ImageScorer(builtin_pipeline, tiny_facenet, ClipChoice(note="no CLIP: test"),
                         detector=LandmarkDetector(render.landmarks_px))

    asked_right = scorer.score(image, shown, str(photo), "a portrait")
    assert asked_right.fit == "landmarks68" and asked_right.pose_note is None
    # The fit recovers a rendered pose within ~3 degrees (the same bound test_generation_checks uses).
    assert asked_right.pose_error["yaw"] < 3 and asked_right.pose_error["pitch"] < 3
    # The reference photo is the image itself, cropped at the same box: the same embedding (float32: 1e-5).
    assert asked_right.identity == pytest.approx(1.0, abs=1e-5) and asked_right.identity_note is None
    assert asked_right.clip_score is None and asked_right.clip_note == "no CLIP: test"
    assert asked_right.lighting_rmse is None and "does not estimate lighting" in asked_right.lighting_note

    asked_wrong = scorer.score(image, HeadState(pose=Pose(yaw=-20)), str(photo), "a portrait")
    est = asked_wrong.estimated
    assert asked_wrong.pose_error["yaw"] == pytest.approx(abs(est["yaw"] + 20)) and asked_wrong.pose_error["yaw"] > 40
    assert asked_wrong.pose_aa_rmse == pytest.approx(
        metrics.axis_angle_rmse((-20, 0, 0), (est["yaw"], est["pitch"], est["roll"])))
    # Expression: RMSE of the effective coefficients (sliders solved onto the head) -- recomputed here.
    fitted_expr = builtin_pipeline.params_from_state(
        HeadState(expression=list(scorer.last_fit.expression),
                  expression_controls=dict(scorer.last_fit.expression_controls))).expression[0].double().numpy()
    asked_expr = builtin_pipeline.params_from_state(HeadState()).expression[0].double().numpy()
    assert asked_wrong.expression_rmse == pytest.approx(metrics.rmse(asked_expr, fitted_expr), rel=1e-9)
    assert asked_wrong.expression_rmse != pytest.approx(asked_right.expression_rmse)  # the request matters


def test_scorer_without_a_face_gives_reasons(builtin_pipeline, tiny_facenet):
    from caphuman.evaluation.scoring import ClipChoice, ImageScorer
    from caphuman.face.detection import OpenCVDetector

    scorer = ImageScorer(builtin_pipeline, tiny_facenet, ClipChoice(note="no CLIP: test"), detector=OpenCVDetector())
    s = scorer.score(np.full((96, 96, 3), 128, np.uint8), HeadState(), str(ASTRONAUT), "a portrait")
    assert s.faces == 0 and s.identity is None and s.estimated is None and s.expression_rmse is None
    assert s.identity_note == s.pose_note == "no face found in the generated image"


# ----------------------------------------------------------------------------- bad material
@pytest.fixture
def material(tmp_path):
    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "ada.jpg").write_bytes(ASTRONAUT.read_bytes())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a portrait\n")
    conds = tmp_path / "conds.json"
    conds.write_text(json.dumps([{"name": "left", "pose": {"yaw": -30}}, {"pose": {"yaw": 20}}]))
    return refs, prompts, conds


def _eval(refs, prompts, conds, out, *extra):
    return _main("evaluate", "--references", refs, "--prompts", prompts, "--conditions", conds, "--out", out,
                 "--device", "cpu", *extra)


@pytest.mark.parametrize("case, expected", [
    ("empty folder", "no photos in"),
    ("unreadable photo", "broken.jpg cannot be used"),
    ("bad JSON", "bad.json is not valid JSON"),
    ("unknown field", 'bad.json: head state: unknown field "pose.yaww"'),
    ("bad list item", 'conds.json item 1: head state: "pose.yaw" must be a number'),
    ("no prompts", "has no prompts"),
    ("bad seeds", "--seeds: 'x' is not a seed"),
])
def test_bad_material_is_named(material, tmp_path, capsys, case, expected):
    refs, prompts, conds = material
    seeds = "1"
    if case == "empty folder":
        refs = tmp_path / "empty"
        refs.mkdir()
        (refs / "notes.txt").write_text("not a photo")
    elif case == "unreadable photo":
        (refs / "broken.jpg").write_text("this is not a JPEG")
    elif case in ("bad JSON", "unknown field"):
        conds = tmp_path / "conds"
        conds.mkdir()
        (conds / "ok.json").write_text('{"pose": {"yaw": 10}}')
        (conds / "bad.json").write_text('{"pose": {"yaw": 10}' if case == "bad JSON" else '{"pose": {"yaww": 10}}')
    elif case == "bad list item":
        conds.write_text(json.dumps([{"pose": {"yaw": 10}}, {"pose": {"yaw": "left"}}]))
    elif case == "no prompts":
        prompts.write_text("# only a comment\n\n")
    else:
        seeds = "1,x"
    assert _eval(refs, prompts, conds, tmp_path / "out", "--seeds", seeds) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()  # nothing ran


def test_a_job_condition_sets_pose_expression_and_lighting_but_keeps_shape():
    from caphuman.batch.jobs import job_from_dict
    from caphuman.errors import InputError

    cond = {"pose": {"yaw": -40}, "expression_controls": {"smile": 0.5}, "lighting": {"azimuth": 60},
            "shape": [2.0], "placement": {"scale": 1.5}}
    job = job_from_dict({"reference": str(ASTRONAUT), "prompt": "p", "condition": cond})
    fitted = HeadState(shape=[0.3, -0.2], pose=Pose(yaw=5, roll=3))
    base = job.base_state(fitted)
    assert base.pose.yaw == -40 and base.pose.roll == 0  # pose from the condition
    assert base.expression_controls == {"smile": 0.5} and base.lighting.azimuth == 60
    assert base.shape == [0.3, -0.2] and base.placement.scale == 1.0  # identity and position stay the reference's
    with_position = job_from_dict({"reference": str(ASTRONAUT), "prompt": "p", "condition": cond,
                                   "condition_modes": "position,pose"})
    b2 = with_position.base_state(fitted)
    assert b2.placement.scale == 1.5 and b2.lighting.azimuth != 60
    assert with_position.fingerprint != job.fingerprint
    plain = job_from_dict({"reference": str(ASTRONAUT), "prompt": "p"})
    assert plain.base_state(fitted).pose.yaw == 5 and plain.fingerprint != job.fingerprint
    with pytest.raises(InputError, match="condition_modes"):
        job_from_dict({"reference": str(ASTRONAUT), "prompt": "p", "condition_modes": "pose"})
    with pytest.raises(InputError, match="head state"):
        job_from_dict({"reference": str(ASTRONAUT), "prompt": "p", "condition": {"pose": {"yaw": "x"}}})


# ----------------------------------------------------------------------------- end to end
def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_evaluate_end_to_end_resume_and_rescore(tiny_weights, tiny_clip, tmp_path, capsys):
    """2 photos x 1 prompt x 2 conditions x 2 seeds x 2 images = 16 rows; again: nothing regenerated or
    rescored; --rescore gives the same CSV; a missing CLIP gives n/a with the reason."""
    import torch

    from caphuman.batch.manifest import read_records
    from caphuman.evaluation.report import COLUMNS, PAPER

    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "ada.jpg").write_bytes(ASTRONAUT.read_bytes())
    (refs / "grace.jpg").write_bytes(HOPPER.read_bytes())
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# the prompt list\na photo of a person smiling\n")
    conds = tmp_path / "conds.json"
    conds.write_text(json.dumps([{"name": "left", "pose": {"yaw": -50, "pitch": 10}, "lighting": {"azimuth": 60}},
                                 {"name": "right", "pose": {"yaw": 20}, "expression_controls": {"smile": 0.5}}]))
    out = tmp_path / "out"
    args = ["--seeds", "1,5", "--num-images", "2", "--weights", tiny_weights, "--clip", tiny_clip,
            "--size", "64", "--steps", "2", "--no-progress", "--batch-size", "8"]
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _eval(refs, prompts, conds, out, *args) == 0
        first = capsys.readouterr()
        rows = _rows(out / "scores.csv")
        assert list(rows[0]) == list(COLUMNS)
        assert len(rows) == 2 * 1 * 2 * 2 * 2
        keys = {(r["reference"], r["prompt_index"], r["condition"], r["seed"], r["image_index"]) for r in rows}
        assert len(keys) == 16 and {r["status"] for r in rows} == {"ok"}
        for r in rows:
            assert int(r["image_seed"]) == int(r["seed"]) + int(r["image_index"])
            assert (out / r["image"]).is_file()
            yaw = {"left": -50.0, "right": 20.0}[r["condition"]]  # the condition's pose was what the hint drew
            assert float(r["yaw_requested"]) == yaw and r["yaw_bin"] == {"left": "45+", "right": "15-30"}[r["condition"]]
            assert float(r["clip_score"]) == pytest.approx(2.5 * max(float(r["clip_cosine"]), 0.0), abs=1e-5)
            side = json.loads((out / r["image"]).with_suffix(".json").read_text())
            assert side["head_state"]["pose"]["yaw"] == yaw
            # noise images: no face, so no identity / pose number, and the reason says so
            assert r["identity"] == "" and r["identity_note"] and r["pose_note"]
        summary = json.loads((out / "summary.json").read_text())
        assert summary["counts"]["planned_images"] == 16 and summary["counts"]["scored"] == 16
        assert summary["counts"]["references"] == 2 and summary["counts"]["seeds"] == 2
        assert summary["metrics"]["clip_score"]["count"] == 16
        assert summary["metrics"]["clip_score"]["mean"] == pytest.approx(
            np.mean([float(r["clip_score"]) for r in rows]), abs=1e-5)
        assert summary["pose_by_yaw_bin"]["45+"]["images"] == 8 and summary["pose_by_yaw_bin"]["0-15"]["images"] == 0
        assert {c["metric"]: c["paper"] for c in summary["comparison"]} == {
            k: PAPER[k]["value"] for k in ("identity", "clip", "pose", "expression", "lighting")}
        assert summary["paper"]["identity"] == 0.8429 and summary["paper"]["lighting"] == 0.1047
        assert "identity" in summary["metrics"] and summary["scorers"]["identity"]  # which embedder is recorded
        from PIL import Image

        with Image.open(out / "summary.png") as im:
            assert im.format == "PNG" and im.size[0] >= 800
        assert "0.8429" in first.out and str(out / "scores.csv") in first.out
        plan = (out / "jobs.jsonl").read_text().splitlines()
        assert len(plan) == 8 and all(json.loads(line)["num_images"] == 2 for line in plan)

        # again: every job already done, every score cached, the same CSV
        records, csv_before = read_records(out / "generated" / "manifest.jsonl"), (out / "scores.csv").read_text()
        cache_lines = len((out / "scores.jsonl").read_text().splitlines())
        mtimes = {r["image"]: (out / r["image"]).stat().st_mtime_ns for r in rows}
        assert _eval(refs, prompts, conds, out, *args) == 0
        assert "8/8 jobs done (8 already, 0 now); 0 images made" in capsys.readouterr().err
        assert read_records(out / "generated" / "manifest.jsonl") == records
        assert len((out / "scores.jsonl").read_text().splitlines()) == cache_lines == 16
        assert {k: (out / k).stat().st_mtime_ns for k in mtimes} == mtimes
        assert (out / "scores.csv").read_text() == csv_before

        # --rescore recomputes (same numbers); a missing CLIP is n/a with its reason
        assert _eval(refs, prompts, conds, out, *args, "--rescore") == 0
        assert len((out / "scores.jsonl").read_text().splitlines()) == 32
        assert (out / "scores.csv").read_text() == csv_before
        no_clip = [a if a != str(tiny_clip) else str(tmp_path / "no-clip") for a in map(str, args)]
        assert _eval(refs, prompts, conds, out, *no_clip) == 0
        capsys.readouterr()
        rows = _rows(out / "scores.csv")
        assert all(r["clip_score"] == "" and "not found" in r["clip_note"] for r in rows)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["metrics"]["clip_score"]["mean"] is None
        assert list(summary["metrics"]["clip_score"]["not_measured"].values()) == [16]
    finally:
        torch.set_num_threads(n)


def test_a_photo_without_a_face_fails_its_jobs_and_says_why(tiny_weights, tmp_path, capsys):
    """The blank photo's job fails (recorded, exit 1); the other photo's image is still scored."""
    from PIL import Image

    refs = tmp_path / "refs"
    refs.mkdir()
    (refs / "ada.jpg").write_bytes(ASTRONAUT.read_bytes())
    Image.new("RGB", (128, 128), (128, 128, 128)).save(refs / "blank.png")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a portrait\n")
    conds = tmp_path / "front.json"
    conds.write_text('{"pose": {"yaw": 0}}')
    out = tmp_path / "out"
    assert _eval(refs, prompts, conds, out, "--weights", tiny_weights, "--clip", tmp_path / "no-clip", "--size", "64",
                 "--steps", "1", "--no-progress") == 1
    err = capsys.readouterr().err
    assert "failed: blank." in err and "face" in err
    rows = {r["reference"]: r for r in _rows(out / "scores.csv")}
    assert rows["blank"]["status"] == "failed" and "face" in rows["blank"]["error"]
    assert rows["ada"]["status"] == "ok" and rows["ada"]["condition"] == "front"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["failed"] == 1 and summary["counts"]["scored"] == 1
