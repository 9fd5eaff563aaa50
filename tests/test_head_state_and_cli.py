"""HeadState JSON round trips, the preview CLI contract and mesh export."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import trimesh

from caphuman.controls import HeadState
from caphuman.controls.pose import axis_angle_from_ypr, rotation_from_axis_angle, rotation_from_ypr, ypr_from_axis_angle
from caphuman.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


def test_state_json_round_trip():
    s = HeadState(shape=[0.5, -1.0], expression=[0.1], expression_controls={"smile": 0.4, "mouth_open": 0.2})
    s.pose.yaw, s.pose.pitch, s.pose.roll, s.pose.jaw = 12.5, -7.0, 3.0, 5.0
    s.placement.scale, s.placement.shift_x = 1.2, -0.1
    s.lighting.azimuth, s.lighting.sh = 45.0, [[0.1, 0.2, 0.3]] * 9
    again = HeadState.from_json(s.to_json())
    assert again == s
    assert json.loads(again.to_json())["pose"]["yaw"] == 12.5


@pytest.mark.parametrize("text,match", [
    ('{"pose": {"yaw": NaN}}', "finite"),
    ('{"pose": {"yaw": "NaN"}}', "must be a number, got a string"),  # JSON strings are not numbers
    ('{"pose": {"yaww": 1}}', 'unknown field "pose.yaww"'),
    ('{"colour": 1}', 'unknown field "colour"'),
    ('[1, 2]', "object"),
    ('{"lighting": {"sh": [[1, 2]]}}', "9 rows"),
    ('{"expression_controls": {"smile": "big"}}', "number"),
    ('{not json', "not valid JSON"),
])
def test_state_json_errors(text, match):
    with pytest.raises(InputError, match=match):
        HeadState.from_json(text)


def test_ypr_round_trip_and_axis_angle():
    rng = np.random.default_rng(0)
    for _ in range(20):
        ypr = rng.uniform([-89, -59, -59], [89, 59, 59])
        back = ypr_from_axis_angle(axis_angle_from_ypr(*ypr))
        # float64 round trip (asin/atan2 conditioned by 1 / cos(pitch <= 59 deg) ~ 2): ~1e-13 deg measured;
        # 1e-6 deg is far above that and far below any convention error (degrees)
        np.testing.assert_allclose(back, ypr, atol=1e-6)
        np.testing.assert_allclose(rotation_from_axis_angle(axis_angle_from_ypr(*ypr)), rotation_from_ypr(*ypr), atol=1e-9)


def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "caphuman", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_preview_cli_writes_everything(tmp_path):
    out, hint, mesh, params = tmp_path / "p.png", tmp_path / "h.npy", tmp_path / "h.glb", tmp_path / "s.json"
    r = run_cli("preview", "--yaw", "30", "--expression", "smile=0.5", "--size", "96", "--hint", str(hint),
                "--mesh", str(mesh), "--out", str(out), "--save-params", str(params))
    assert r.returncode == 0, r.stderr
    assert "built-in" in r.stderr  # says which head it used
    h = np.load(hint)
    assert h.shape == (9, 96, 96) and h.dtype == np.float32 and (h != 0).any()
    from PIL import Image

    assert Image.open(out).size == (96, 96)
    m = trimesh.load(mesh, force="mesh")
    from caphuman.head.resolve import load_head

    assert len(m.vertices) == load_head("builtin").data.num_vertices
    saved = HeadState.from_json(params.read_text())
    assert saved.pose.yaw == 30 and saved.expression_controls == {"smile": 0.5}
    # --params reproduces the same hint
    hint2 = tmp_path / "h2.npy"
    r = run_cli("preview", "--params", str(params), "--size", "96", "--hint", str(hint2))
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(hint2), h)


@pytest.mark.parametrize("args,needle", [
    (["--yaw", "abc"], "invalid float"),
    (["--pitch", "nan"], "finite"),
    (["--expression", "grin=1"], "unknown expression"),
    (["--expression", "smile"], "NAME=VALUE"),
    (["--size", "100000"], "--size"),
    (["--head", "/nonexistent/head.npz"], "does not exist"),
    (["--params", "/nonexistent.json"], "cannot read"),
    (["--mesh", "/tmp/x.stl"], ".glb or .obj"),
])
def test_preview_cli_bad_input_is_one_clear_line(args, needle):
    r = run_cli("preview", "--size", "32", *args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and needle in lines[0], r.stderr


def test_mesh_export_formats(builtin_pipeline, tmp_path):
    s = HeadState()
    s.pose.yaw = 40
    glb = builtin_pipeline.export_glb(s)
    m = trimesh.load(trimesh.util.wrap_as_stream(glb), file_type="glb", force="mesh")
    assert len(m.faces) == len(builtin_pipeline.data.f)
    assert m.visual.kind == "vertex" and m.visual.vertex_colors.shape[0] == len(m.vertices)
    # Posed: the nose (most +z at yaw 0) has swung toward +x.
    nose = builtin_pipeline.pose(s).landmarks[30] - np.asarray(builtin_pipeline.framing.pivot)
    assert nose[0] > 0.02
    obj = builtin_pipeline.export_obj(s)
    assert obj.count("\nf ") + obj.startswith("f ") == len(builtin_pipeline.data.f)


def test_unexpected_errors_are_one_line(monkeypatch, capsys):
    import caphuman.cli.preview as preview_cli
    from caphuman.__main__ import main

    def boom(args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(preview_cli, "run", boom)
    monkeypatch.delenv("CAPHUMAN_DEBUG", raising=False)
    assert main(["preview"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: unexpected RuntimeError: disk on fire (set CAPHUMAN_DEBUG=1 for the traceback)"]
    monkeypatch.setenv("CAPHUMAN_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["preview"])
