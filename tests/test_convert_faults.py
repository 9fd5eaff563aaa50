"""Streamed conversion's file layer and its bad inputs (issue 19): safetensors headers checked
completely (truncated, foreign, lying), lazy views equal to safetensors' own reader, the streaming
writer's files readable by safetensors, --half, and CLIP folders whose pickle would run code."""

from __future__ import annotations

import json
import re
import os
import struct

import pytest

from caphuman.errors import InputError, UnsafePickleError
from diffusion_fixtures import tiny_dir  # noqa: F401

torch = pytest.importorskip("torch")


def _tensors():
    g = torch.Generator().manual_seed(0)
    return {"a": torch.randn(3, 5, generator=g), "h": torch.randn(7, generator=g).half(),
            "b": torch.randn(2, 2, generator=g).bfloat16(), "i": torch.arange(-4, 4), "flag": torch.tensor([True, False]),
            "empty": torch.zeros(0, 3), "scalar": torch.tensor(2.5)}


def test_lazy_views_and_streamed_writes_match_safetensors(tmp_path):
    from safetensors.torch import load_file, save_file

    from caphuman.diffusion.tensor_files import WeightsFile, write_safetensors

    want = _tensors()
    ref = tmp_path / "ref.safetensors"
    save_file(want, str(ref))
    f = WeightsFile(ref)
    assert sorted(f.keys()) == sorted(want) and f.shape("a") == (3, 5) and f.dtype_name("h") == "F16"
    got = f.tensors(lambda k: True)
    for k, v in want.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert set(f.tensors(["a", "i"])) == {"a", "i"}
    ours = write_safetensors(tmp_path / "ours.safetensors", got)
    back = load_file(str(ours))  # safetensors' own reader accepts the streamed file
    assert all(torch.equal(back[k], v) and back[k].dtype == v.dtype for k, v in want.items())
    half = load_file(str(write_safetensors(tmp_path / "half.safetensors", got, dtype=torch.float16)))
    assert half["a"].dtype == torch.float16 and torch.equal(half["a"], want["a"].half())
    assert half["i"].dtype == torch.int64 and half["flag"].dtype == torch.bool  # only floating tensors are cast
    assert not list(tmp_path.glob("*.partial"))


def test_torch_checkpoints_open_lazily_legacy_too(tmp_path):
    from caphuman.diffusion.tensor_files import WeightsFile

    want = _tensors()
    for legacy in (False, True):
        path = tmp_path / f"m{legacy}.ckpt"
        torch.save({"state_dict": want, "global_step": 3}, path, _use_new_zipfile_serialization=not legacy)
        f = WeightsFile(path)
        got = f.tensors(lambda k: k != "scalar")
        assert set(got) == set(want) - {"scalar"} and all(torch.equal(got[k], want[k]) for k in got)


def _header_file(path, header: dict, data: bytes = b"", length: int | None = None):
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


@pytest.mark.parametrize("case,message", [
    ("truncated", "ends at byte 60 of the data but the file holds only 30: the file is truncated"),
    ("cut_header", "the file is truncated"),
    ("huge_header", "declares a 1152921504606846976-byte header"),
    ("not_json", "not valid JSON"),
    ("lying_shape", "declares shape [4] F32 (16 bytes) but spans 8 bytes"),
    ("bad_dtype", "malformed header entry"),
    ("tiny", "not even a safetensors header"),
])
def test_bad_safetensors_headers_are_specific(tmp_path, case, message):
    from caphuman.diffusion.tensor_files import WeightsFile

    path = tmp_path / "backbone.safetensors"
    if case == "truncated":
        _header_file(path, {"w": {"dtype": "F32", "shape": [15], "data_offsets": [0, 60]}}, b"\0" * 30)
    elif case == "cut_header":
        path.write_bytes(struct.pack("<Q", 500) + b'{"w": {"dtype"')
    elif case == "huge_header":
        _header_file(path, {}, length=2 ** 60)
    elif case == "not_json":
        path.write_bytes(struct.pack("<Q", 4) + b"\xff\xfe{[")
    elif case == "lying_shape":
        _header_file(path, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 8]}}, b"\0" * 8)
    elif case == "bad_dtype":
        _header_file(path, {"w": {"dtype": "F33", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4)
    else:
        path.write_bytes(b"abc")
    with pytest.raises(InputError, match=re.escape(message)):
        WeightsFile(path)


def test_convert_with_a_truncated_backbone_is_one_line(tiny_dir, tmp_path, capsys):
    from caphuman.__main__ import main

    orig = tiny_dir / "original"
    cut = tmp_path / "backbone.safetensors"
    data = (orig / "backbone.safetensors").read_bytes()
    cut.write_bytes(data[: len(data) * 2 // 3])
    code = main(["convert", "--caphuman-ckpt", str(orig / "caphuman.ckpt"), "--backbone", str(cut),
                 "--original-config", str(orig / "cldm_tiny.yaml"), "--clip", str(orig / "clip"),
                 "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "the file is truncated" in err and "backbone.safetensors" in err
    assert "unexpected" not in err and "Traceback" not in err


def test_convert_half_matches_the_fp16_cast(tiny_dir, tmp_path):
    from safetensors.torch import load_file

    from caphuman.diffusion.convert import convert_caphuman

    orig = tiny_dir / "original"
    convert_caphuman(orig / "caphuman.ckpt", tmp_path / "out", backbone=orig / "backbone.safetensors",
                     vae=orig / "vae.safetensors", original_config=orig / "cldm_tiny.yaml", clip=orig / "clip",
                     half=True, log=lambda *_: None)
    for part, name in (("unet", "diffusion_pytorch_model"), ("text_encoder", "model")):
        got = load_file(str(tmp_path / "out" / part / f"{name}.safetensors"))
        want = load_file(str(tiny_dir / part / f"{name}.safetensors"))
        assert got.keys() == want.keys()
        assert all(got[k].dtype == torch.float16 and torch.equal(got[k], want[k].half()) for k in want), part
    assert json.loads((tmp_path / "out" / "text_encoder" / "config.json").read_text())["dtype"] == "float16"


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_clip_folder_with_a_code_running_pickle_is_refused(tmp_path):
    from transformers import CLIPVisionConfig, CLIPVisionModel

    from caphuman.diffusion.convert import _clip_part
    from caphuman.face.clip_image import ClipImageEncoder

    folder = tmp_path / "clip"
    folder.mkdir()
    CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                     image_size=32, patch_size=8).save_pretrained(folder)
    marker = tmp_path / "PWNED"
    torch.save({"vision_model.post_layernorm.weight": torch.ones(32), "x": _Evil(str(marker))},
               folder / "pytorch_model.bin")
    for load in (lambda: ClipImageEncoder.from_pretrained(folder),
                 lambda: _clip_part(str(folder), CLIPVisionModel.from_pretrained, "image_encoder")):
        with pytest.raises(UnsafePickleError, match="pytorch_model.bin is a pickle that holds more than weights"):
            load()
    assert not marker.exists()
    os.remove(folder / "pytorch_model.bin")  # no weights at all: a clear input error too
    with pytest.raises(InputError, match="cannot load the CLIP image encoder from"):
        ClipImageEncoder.from_pretrained(folder)
