"""generate / download CLIs on the tiny model (CPU), and their error paths."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from diffusion_fixtures import tiny_dir  # noqa: F401

torch = pytest.importorskip("torch")


def _cli(*args, env=None):
    """Run a command in a subprocess (clean import state, real exit code)."""
    e = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "caphuman", *args], capture_output=True, text=True, env=e)


def _main(*args):
    """Run a command in-process (fast); returns the exit code."""
    from caphuman.__main__ import main

    return main(list(args))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)).save(d / "ref.png")
    hint = (rng.standard_normal((9, 64, 64)) * 0.5).astype(np.float32)
    np.save(d / "hint.npy", hint)
    return d


def test_generate_end_to_end_seeded(tiny_dir, inputs, tmp_path):
    def gen(seed, out, n=1):
        rc = _main("generate", "--weights", str(tiny_dir), "--reference", str(inputs / "ref.png"),
                 "--prompt", "a portrait", "--hint", str(inputs / "hint.npy"), "--steps", "2", "--size", "64",
                 "--seed", str(seed), "--num-images", str(n), "--device", "cpu", "--out", str(out))
        assert rc == 0

    gen(1, tmp_path / "a.png")
    gen(1, tmp_path / "b.png")
    gen(2, tmp_path / "c.png")
    read = lambda name: np.asarray(__import__("PIL.Image").Image.open(tmp_path / name))  # noqa: E731
    assert read("a.png").shape == (64, 64, 3)
    assert np.array_equal(read("a.png"), read("b.png"))
    assert not np.array_equal(read("a.png"), read("c.png"))
    side = json.loads((tmp_path / "a.json").read_text())
    assert side["parameters"]["seed"] == 1 and side["parameters"]["steps"] == 2
    assert side["parameters"]["scheduler"] == "ddim" and side["parameters"]["dtype"] == "fp32"

    gen(3, tmp_path / "multi.png", n=2)
    assert (tmp_path / "multi_0.png").is_file() and (tmp_path / "multi_1.png").is_file()
    assert json.loads((tmp_path / "multi.json").read_text())["images"][1].endswith("multi_1.png")


def test_generate_errors(tmp_path, inputs, capsys):
    rc = _main("generate", "--weights", str(tmp_path / "nope"), "--reference", str(inputs / "ref.png"),
               "--prompt", "x", "--hint", str(inputs / "hint.npy"), "--size", "64", "--out", str(tmp_path / "o.png"))
    assert rc == 2 and "no converted CapHuman weights" in capsys.readouterr().err
    rc = _main("generate", "--weights", str(tmp_path), "--reference", str(tmp_path / "missing.png"),
               "--prompt", "x", "--size", "64", "--out", str(tmp_path / "o.png"))
    assert rc == 2


def test_generate_renders_the_previewed_head(tiny_dir, tmp_path):
    """The issue's command: head controls on an example photo; the hint is the preview's hint."""
    from pathlib import Path

    photo = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.jpg"
    common = ["--reference", str(photo), "--yaw", "20", "-e", "smile=0.5", "--size", "64"]
    rc = _main("generate", "--weights", str(tiny_dir), "--prompt", "a portrait", "--steps", "2", "--seed", "1",
               "--device", "cpu", "--out", str(tmp_path / "o.png"), *common)
    assert rc == 0 and (tmp_path / "o.png").is_file()
    side = json.loads((tmp_path / "o.json").read_text())["parameters"]
    assert side["head_state"]["pose"]["yaw"] == 20.0
    # -e smile=0.5 on top of the sliders fitted to the photo (the dense fit sets the others)
    assert side["head_state"]["expression_controls"]["smile"] == 0.5
    # The head you preview is the head you generate with.
    from caphuman.cli import generate

    seen = {}
    real = generate._render_hint

    def spy(args, size):
        hint, *rest = real(args, size)
        seen["hint"] = hint
        return (hint, *rest)

    generate._render_hint = spy
    try:
        assert _main("generate", "--weights", str(tiny_dir), "--prompt", "x", "--steps", "1", "--device", "cpu",
                     "--out", str(tmp_path / "p.png"), *common) == 0
    finally:
        generate._render_hint = real
    assert _main("preview", *common, "--hint", str(tmp_path / "h.npy")) == 0
    np.testing.assert_array_equal(seen["hint"], np.load(tmp_path / "h.npy"))
    assert (seen["hint"] != 0).any()


def test_download_offline(tmp_path):
    """Offline with nothing on disk: a clear message from the function and from the command.
    (The network paths are tested against a loopback server in test_weights_download.py.)"""
    from caphuman.errors import MissingWeightsError
    from caphuman.weights import download as dl

    with pytest.raises(MissingWeightsError, match="offline"):
        dl.download("caphuman", offline=True, root=tmp_path, log=lambda *_: None)
    p = _cli("download", "caphuman", "--offline", env={"CAPHUMAN_CHECKPOINTS": str(tmp_path)})
    assert p.returncode == 2 and "offline" in p.stderr and "Traceback" not in p.stderr


def _tiny_face_encoders(with_facenet=True):
    from caphuman.face.analysis import Encoders
    from caphuman.face.facenet import InceptionResnetV1
    from caphuman.face.parsing import BiSeNet

    torch.manual_seed(0)
    net = InceptionResnetV1(width=0.0625, blocks=(1, 1, 1), num_classes=None).eval() if with_facenet else None
    return Encoders(facenet=net, parser=BiSeNet(n_classes=19, width=8).eval())


def test_generate_with_real_weights_layout_uses_face_encoders(tiny_dir, tmp_path, monkeypatch):
    """A converted folder has no identity/: FaceNet + BiSeNet come from caphuman.face (checkpoints/)."""
    import shutil
    from pathlib import Path

    import caphuman.face.analysis as analysis
    from caphuman.conditioning import FaceIdentityEncoder, identity_encoder_for

    weights = tmp_path / "converted"
    shutil.copytree(tiny_dir, weights)
    shutil.rmtree(weights / "identity")
    monkeypatch.setattr(analysis, "load_encoders", lambda root=None, clip=True: _tiny_face_encoders())
    enc = identity_encoder_for(weights)
    assert isinstance(enc, FaceIdentityEncoder)
    photo = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut.jpg"
    from PIL import Image

    ident = enc.encode_identity(Image.open(photo))
    assert tuple(ident.id_embedding.shape) == (1, 512)
    # float32 norm of a normalised 512-vector: <= 9 units of pairwise summation (1.1e-6); a missing
    # normalisation is O(1) off
    assert abs(float(ident.id_embedding.norm()) - 1.0) < 1e-4
    assert ident.face_only_image.size == Image.open(photo).size
    assert (np.asarray(ident.face_only_image) == 255).all(-1).mean() > 0.0  # some classes whitened
    rc = _main("generate", "--weights", str(weights), "--reference", str(photo), "--prompt", "x", "--steps", "1",
               "--size", "64", "--device", "cpu", "--out", str(tmp_path / "o.png"))
    assert rc == 0 and (tmp_path / "o.png").is_file()
    # Without the FaceNet file: one clear error naming it.
    monkeypatch.setattr(analysis, "load_encoders", lambda root=None, clip=True: _tiny_face_encoders(False))
    from caphuman.errors import MissingWeightsError

    with pytest.raises(MissingWeightsError, match="20180402-114759-vggface2.pt"):
        identity_encoder_for(weights)


def test_generate_with_lora(tiny_dir, inputs, tmp_path):
    from caphuman.testing.tiny_lora import write_tiny_lora

    lora = write_tiny_lora(tiny_dir, tmp_path / "style.safetensors")

    def gen(out, *extra):
        rc = _main("generate", "--weights", str(tiny_dir), "--reference", str(inputs / "ref.png"), "--prompt", "x",
                   "--hint", str(inputs / "hint.npy"), "--steps", "2", "--size", "64", "--seed", "3",
                   "--device", "cpu", "--out", str(tmp_path / out), *extra)
        assert rc == 0
        return np.asarray(__import__("PIL.Image").Image.open(tmp_path / out), dtype=np.int16)

    base = gen("base.png")
    styled = gen("lora.png", "--lora", str(lora), "--lora-scale", "1.0")
    off = gen("off.png", "--lora", str(lora), "--lora-scale", "0")
    assert np.abs(styled - base).max() > 0
    # scale 0 = the base model up to float32 rounding (a few units, ~1e-6 of the 0-255 range): that can only
    # flip a pixel sitting on a .5 boundary by one level, so <= 1; an active LoRA moves pixels by many levels
    assert np.abs(off - base).max() <= 1
    assert _main("generate", "--weights", str(tiny_dir), "--reference", str(inputs / "ref.png"), "--prompt", "x",
                 "--hint", str(inputs / "hint.npy"), "--size", "64", "--device", "cpu",
                 "--lora", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "x.png")) == 2


def test_weights_resolution_checkpoints_then_hub_cache(tiny_dir, tmp_path, monkeypatch):
    """--weights accepts a folder or a Hub repo id; without it: checkpoints/ first, then the Hub cache."""
    import shutil

    from huggingface_hub import constants

    from caphuman.errors import MissingWeightsError
    from caphuman.weights.download import resolve_weights

    cache = tmp_path / "hub"
    snap = cache / "models--someone--caphuman-diffusers" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_dir, snap)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("CAPHUMAN_WEIGHTS", raising=False)
    monkeypatch.setenv("CAPHUMAN_CHECKPOINTS", str(tmp_path / "ckpt"))

    assert resolve_weights("someone/caphuman-diffusers") == snap          # repo id, from the cache
    assert resolve_weights(str(tiny_dir)) == tiny_dir                      # a folder
    with pytest.raises(MissingWeightsError, match="no converted CapHuman pipeline"):
        resolve_weights("someone/not-cached")
    assert resolve_weights() == tmp_path / "ckpt" / "caphuman-diffusers"  # nothing anywhere: where expected
    monkeypatch.setenv("CAPHUMAN_WEIGHTS_REPO", "someone/caphuman-diffusers")
    assert resolve_weights() == snap                                       # the Hub cache
    shutil.copytree(tiny_dir, tmp_path / "ckpt" / "caphuman-diffusers")
    assert resolve_weights() == tmp_path / "ckpt" / "caphuman-diffusers"  # checkpoints/ comes first
