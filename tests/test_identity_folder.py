"""A weights folder's identity.json never names code: only the fixed table's classes load."""

from __future__ import annotations

import json
import shutil

import pytest

from caphuman.errors import InputError


def _copy_identity(tiny_weights, tmp_path):
    folder = tmp_path / "identity"
    shutil.copytree(f"{tiny_weights}/identity", folder)
    return folder


def _edit(folder, fn):
    index = json.loads((folder / "identity.json").read_text())
    fn(index)
    (folder / "identity.json").write_text(json.dumps(index))


def test_tiny_identity_loads_and_legacy_spelling_still_works(tiny_weights, tmp_path):
    from caphuman.diffusion.identity import load_identity_encoder

    folder = _copy_identity(tiny_weights, tmp_path)
    assert json.loads((folder / "identity.json").read_text())["recognizer"]["class"] == "tiny-recognizer"
    enc = load_identity_encoder(folder)
    _edit(folder, lambda i: i["recognizer"].update({"class": "caphuman.testing.tiny_model:TinyRecognizer"}))
    enc2 = load_identity_encoder(folder)
    for a, b in zip(enc.recognizer.state_dict().values(), enc2.recognizer.state_dict().values()):
        assert (a == b).all()


@pytest.mark.parametrize("spec", [
    {"class": "os:system", "kwargs": {"command": "touch {marker}"}},
    {"class": "subprocess:Popen", "kwargs": {"args": ["touch", "{marker}"]}},
    {"class": "builtins:eval", "kwargs": {}},
    {"class": "caphuman.testing.tiny_model:TinyFaceParser", "kwargs": {"width": 8}},  # a parser as recogniser
    {"class": ["tiny-recognizer"]},
])
def test_code_naming_identity_json_is_refused_before_any_import(tiny_weights, tmp_path, spec):
    from caphuman.diffusion.identity import load_identity_encoder

    folder = _copy_identity(tiny_weights, tmp_path)
    marker = tmp_path / "PWNED"
    text = json.dumps(spec).replace("{marker}", str(marker))
    _edit(folder, lambda i: i.update({"recognizer": {**json.loads(text), "weights": "recognizer.safetensors"}}))
    with pytest.raises(InputError, match=r"identity.json \(recognizer\): class .* is not allowed \(a weights folder "
                                         r"cannot name code\); use one of: facenet, tiny-recognizer"):
        load_identity_encoder(folder)
    assert not marker.exists()


def test_malformed_identity_json_names_the_file(tiny_weights, tmp_path):
    from caphuman.diffusion.identity import load_identity_encoder

    folder = _copy_identity(tiny_weights, tmp_path)
    (folder / "identity.json").write_bytes(b"\xff{not json")
    with pytest.raises(InputError, match="identity.json is not valid JSON"):
        load_identity_encoder(folder)
    folder = _copy_identity(tiny_weights, tmp_path / "b")
    _edit(folder, lambda i: i["parser"].update({"weights": "../../etc/passwd.safetensors"}))
    with pytest.raises(InputError, match=r"\(parser\): weights must be a .safetensors file name"):
        load_identity_encoder(folder)
    folder = _copy_identity(tiny_weights, tmp_path / "c")
    _edit(folder, lambda i: i["parser"].update({"kwargs": {"width": {"__class__": "x"}}}))
    with pytest.raises(InputError, match="kwargs must be an object of plain numbers"):
        load_identity_encoder(folder)
    folder = _copy_identity(tiny_weights, tmp_path / "d")
    (folder / "parser.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(InputError, match="parser.safetensors is broken"):
        load_identity_encoder(folder)
