"""install-flame on a synthetic FLAME 2023 Open (real dimensions, chumpy-style pickle, zipped like
the release): install, preview, fit and export; bad archives and payloads change nothing."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from caphuman.errors import InputError, UnsafePickleError
from flame_fixtures import F, V, flame2023_pickle_bytes, flame2023_zip, flame_layout_head, write_deca_data

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def flame_head():
    return flame_layout_head()


@pytest.fixture(scope="module")
def flame_pickle(flame_head):
    return flame2023_pickle_bytes(flame_head)


def _nothing_installed(flame_dir: Path):
    left = sorted(p.name for p in flame_dir.iterdir()) if flame_dir.exists() else []
    assert not [n for n in left if n.endswith(".pkl") or n == "installed.json" or n.startswith(".installing")], left


def test_install_zip_then_preview_fit_export_on_flame_2023_open(tmp_path, monkeypatch, flame_head, flame_pickle):
    from caphuman.controls.state import HeadState, Pose
    from caphuman.head import resolve
    from caphuman.head.flame_install import install_flame
    from caphuman.preview import HeadPreviewPipeline

    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path / "ck"))
    flame_dir = tmp_path / "ck" / "flame"
    write_deca_data(flame_dir, flame_head)
    zpath = flame2023_zip(tmp_path / "FLAME2023Open.zip", flame_pickle)
    result = install_flame(zpath, log=lambda *_: None)
    assert result.path == flame_dir / "flame2023_Open.pkl" and result.release == "FLAME 2023 Open"
    assert result.licence == "CC-BY-4.0" and "checked by structure" in result.verified
    record = json.loads((flame_dir / "installed.json").read_text())
    assert record["model"] == "flame2023_Open.pkl" and "CC BY 4.0" in record["attribution"]
    assert (flame_dir / "flame2023_Open.caphuman.npz").is_file()  # converted once, at install
    assert not (flame_dir / "Readme.pdf").exists()  # only the model is extracted

    resolve._load.cache_clear()
    head = resolve.load_head("auto")
    assert head.kind == "flame" and head.description.startswith("FLAME 2023 Open from")
    data = head.data
    assert (data.num_vertices, data.f.shape[0], data.num_shape, data.shapedirs.shape[2]) == (V, F, 300, 400)
    # (V*3, 36) layout read back: a copy or float32 cast (<= half a unit of |x| <= 5e-4; measured 0); a
    # transposed layout scrambles entries by O(|x|) >> 1e-6
    np.testing.assert_allclose(data.posedirs, flame_head.posedirs, atol=1e-6)
    pipe = HeadPreviewPipeline(data)
    front = pipe.render(HeadState(), 128)
    state = HeadState(pose=Pose(yaw=30.0), expression_controls={"smile": 0.8})
    turned = pipe.render(state, 128)
    assert np.isfinite(turned.hint).all() and turned.hint.shape == (9, 128, 128)
    assert not np.allclose(front.hint, turned.hint)  # a 30 degree turn changes normals by O(0.5)
    glb = pipe.export_glb(state)
    assert glb[:4] == b"glTF"
    import trimesh

    mesh = trimesh.load(trimesh.util.wrap_as_stream(glb), file_type="glb", force="mesh")
    assert len(mesh.faces) == F
    # the fit runs on the new head: a photo analysed for this pipeline gives a FLAME-target state
    from caphuman.face.analysis import analyze_reference, target_for_pipeline

    target = target_for_pipeline(pipe)
    assert target.kind == "flame"
    ref = analyze_reference(str(ROOT / "assets/examples/astronaut.jpg"), 128, target=target, cache=None)
    assert ref.reset_state().placement is not None
    resolve._load.cache_clear()


def test_payload_in_the_pickle_never_runs_and_nothing_is_installed(tmp_path, flame_head):
    from caphuman.head.flame_install import install_flame

    marker = tmp_path / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = flame2023_pickle_bytes(flame_head, extra={"supr_expression_metadata": Evil()})
    zpath = flame2023_zip(tmp_path / "FLAME2023Open.zip", bad)
    flame_dir = tmp_path / "flame"
    with pytest.raises(UnsafePickleError):
        install_flame(zpath, flame_dir, log=lambda *_: None)
    assert not marker.exists()
    _nothing_installed(flame_dir)


def test_traversal_bomb_truncated_and_wrong_files_are_refused(tmp_path, flame_pickle):
    from caphuman.head.flame_install import install_flame
    from caphuman.weights.archive import ArchiveError

    flame_dir = tmp_path / "flame"
    (tmp_path / "a").mkdir()
    z = flame2023_zip(tmp_path / "a" / "FLAME2023Open.zip", flame_pickle, {"../../evil.pkl": b"x"})
    with pytest.raises(ArchiveError, match="outside the folder"):
        install_flame(z, flame_dir, log=lambda *_: None)
    assert not list(tmp_path.rglob("evil.pkl"))
    (tmp_path / "b").mkdir()
    z = flame2023_zip(tmp_path / "b" / "FLAME2023Open.zip", flame_pickle, {"filler.bin": b"\0" * (64 << 20)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        install_flame(z, flame_dir, log=lambda *_: None)
    (tmp_path / "c").mkdir()
    full = flame2023_zip(tmp_path / "c" / "full.zip", flame_pickle).read_bytes()
    trunc = tmp_path / "c" / "FLAME2023Open.zip"
    trunc.write_bytes(full[: len(full) // 2])
    with pytest.raises(ArchiveError, match="not a readable zip"):
        install_flame(trunc, flame_dir, log=lambda *_: None)
    other = tmp_path / "c" / "other.zip"
    with zipfile.ZipFile(other, "w") as zf:
        zf.writestr("model.pkl", pickle.dumps({"a": 1}))
    with pytest.raises(InputError, match="holds no FLAME model"):
        install_flame(other, flame_dir, log=lambda *_: None)
    wrong = tmp_path / "c" / "generic_model.pkl"
    wrong.write_bytes(pickle.dumps({"v_template": np.zeros((10, 3)), "f": np.zeros((4, 3), np.int64),
                                    "shapedirs": np.zeros((10, 3, 400)), "posedirs": np.zeros((30, 36)),
                                    "J_regressor": np.zeros((5, 10)), "kintree_table": np.zeros((2, 5)),
                                    "weights": np.zeros((10, 5))}, protocol=2))
    with pytest.raises(InputError, match="not the FLAME layout"):
        install_flame(wrong, flame_dir, log=lambda *_: None)
    _nothing_installed(flame_dir)


def test_known_release_size_with_a_wrong_hash_is_refused(tmp_path, flame_pickle, monkeypatch):
    from caphuman.head import flame_install

    z = flame2023_zip(tmp_path / "FLAME2023Open.zip", flame_pickle)
    monkeypatch.setitem(flame_install.KNOWN_RELEASES, "FLAME2023Open.zip", (z.stat().st_size, "0" * 64))
    with pytest.raises(InputError, match="size of the published FLAME2023Open.zip but not its SHA-256"):
        flame_install.install_flame(z, tmp_path / "flame", log=lambda *_: None)
    _nothing_installed(tmp_path / "flame")
    from caphuman.weights.fetch import file_checksum

    monkeypatch.setitem(flame_install.KNOWN_RELEASES, "FLAME2023Open.zip",
                        (z.stat().st_size, file_checksum(z, "sha256")))
    result = flame_install.install_flame(z, tmp_path / "flame", log=lambda *_: None)
    assert result.verified.startswith("the published FLAME2023Open.zip")
    assert any("deca-data" in n for n in result.notes)  # landmarks not there: says how to get them


def test_cli_installs_and_credits(tmp_path, flame_head, flame_pickle):
    write_deca_data(tmp_path / "ck" / "flame", flame_head)
    z = flame2023_zip(tmp_path / "FLAME2023Open.zip", flame_pickle)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "CAPHUMAN_CHECKPOINTS": str(tmp_path / "ck")}
    p = subprocess.run([sys.executable, "-m", "caphuman", "install-flame", str(z)], capture_output=True, text=True,
                       env=env, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "installed FLAME 2023 Open (CC-BY-4.0)" in p.stdout and "CC BY 4.0" in p.stdout
    p = subprocess.run([sys.executable, "-m", "caphuman", "install-flame", str(tmp_path / "nope.zip")],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert p.returncode == 2 and "no such file" in p.stderr and "Traceback" not in p.stderr


def test_studio_installs_an_uploaded_zip_and_switches_the_live_head(tmp_path, monkeypatch, flame_head, flame_pickle):
    from caphuman.controls.state import HeadState
    from caphuman.head import resolve
    from caphuman.studio.service import StudioService

    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path / "ck"))
    monkeypatch.delenv("SPACE_ID", raising=False)
    write_deca_data(tmp_path / "ck" / "flame", flame_head)
    z = flame2023_zip(tmp_path / "FLAME2023Open.zip", flame_pickle)
    svc = StudioService(head="builtin", weights=None, device="cpu")
    builtin_vertices = svc.pipeline.data.num_vertices
    # on a Space, uploads stay off unless the owner enables them
    monkeypatch.setenv("SPACE_ID", "someone/studio")
    with pytest.raises(InputError, match="off on this Space.*CAPHUMAN_ALLOW_FLAME_UPLOAD=1"):
        svc.install_flame(z)
    assert svc.head_kind == "builtin" and not (tmp_path / "ck/flame/flame2023_Open.pkl").exists()
    monkeypatch.setenv("CAPHUMAN_ALLOW_FLAME_UPLOAD", "1")
    notes = svc.install_flame(z)
    assert notes[0].startswith("installed FLAME 2023 Open (CC-BY-4.0)")
    assert svc.head_kind == "flame" and svc.pipeline.data.num_vertices == V != builtin_vertices
    assert svc.environment().head.startswith("FLAME 2023 Open")
    result = svc.preview(HeadState(), None, 96)
    assert result.hint.shape == (9, 96, 96) and np.isfinite(result.hint).all()
    # the photo is fitted on the new head
    ref = svc.analyze(str(ROOT / "assets/examples/astronaut.jpg"))
    assert svc.fit_target.kind == "flame" and ref.state is not None
    resolve.forget_loaded_heads()


def test_live_head_payload_carries_flame_2023_open(flame_head):
    """The browser head for a FLAME-layout model: every vertex, the pose correctives, and a base
    mesh equal to the server's unposed head for the same identity."""
    import base64

    from caphuman.controls.state import HeadState
    from caphuman.preview import HeadPreviewPipeline
    from caphuman.studio.live import head_payload

    pipe = HeadPreviewPipeline(flame_head)
    state = HeadState(shape=[0.5, -0.3, 0.2])
    payload = head_payload(pipe, state)
    assert payload["num_vertices"] == V and payload["num_faces"] == F and payload["num_joints"] == 5
    posedirs = np.frombuffer(base64.b64decode(payload["posedirs"]), np.float32)
    assert posedirs.size == V * 3 * 36 and np.abs(posedirs).max() > 0
    base = np.frombuffer(base64.b64decode(payload["base"]), np.float32).reshape(V, 3)
    server = pipe.pose(state.validated()).vertices  # zero pose: template + identity
    # the payload's template + identity blend vs the server's zero-pose LBS, both float32, |v| <= 0.1:
    # a few units (measured equal); 1e-5 = ~800 units, while a shape coefficient on the wrong
    # component moves vertices by >= 1e-4
    np.testing.assert_allclose(base, server, atol=1e-5)
