"""Strict key-compatible loading on random weights saved in the upstream layouts, and safe loading."""

import os
import pickle

import numpy as np
import pytest
import torch

from caphuman.errors import InputError, MissingWeightsError, UnsafePickleError
from caphuman.face.deca import DECA_CODE_SIZE, DecaEncoder, load_deca_encoder
from caphuman.face.facenet import InceptionResnetV1, facenet_input, load_facenet
from caphuman.face.parsing import REMOVED_CLASSES, BiSeNet, face_only, load_bisenet


def _randomise(state):
    g = torch.Generator().manual_seed(0)
    out = {}
    for k, v in state.items():
        if v.dtype.is_floating_point:
            out[k] = torch.rand(v.shape, generator=g) * 0.2 + (1.0 if k.endswith("running_var") else 0.0)
        else:
            out[k] = v.clone()
    return out


def test_real_architectures_have_upstream_keys():
    deca = DecaEncoder().state_dict()
    assert deca["encoder.conv1.weight"].shape == (64, 3, 7, 7)
    assert deca["encoder.layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert deca["layers.0.weight"].shape == (1024, 2048) and deca["layers.2.weight"].shape == (236, 1024)
    assert not any(k.startswith("encoder.fc") for k in deca)
    fn = InceptionResnetV1().state_dict()
    assert fn["conv2d_1a.conv.weight"].shape == (32, 3, 3, 3)
    assert fn["repeat_2.9.branch1.2.conv.weight"].shape == (128, 128, 7, 1)
    assert fn["block8.conv2d.weight"].shape == (1792, 384, 1, 1)
    assert fn["last_linear.weight"].shape == (512, 1792) and "last_linear.bias" not in fn
    assert fn["logits.weight"].shape == (8631, 512)
    bs = BiSeNet().state_dict()
    assert bs["cp.resnet.conv1.weight"].shape == (64, 3, 7, 7)
    assert bs["cp.resnet.layer4.0.downsample.0.weight"].shape == (512, 256, 1, 1)
    assert bs["cp.arm32.conv_atten.weight"].shape == (128, 128, 1, 1)
    assert bs["ffm.convblk.conv.weight"].shape == (256, 256, 1, 1)
    assert bs["conv_out.conv_out.weight"].shape == (19, 256, 1, 1)
    assert bs["conv_out16.conv.conv.weight"].shape == (64, 128, 3, 3)


def test_deca_tar_layout_loads_strictly(tmp_path):
    net = DecaEncoder(width=4, hidden=16)
    state = _randomise(net.state_dict())
    tar = {"E_flame": state, "E_detail": {"encoder.conv1.weight": torch.zeros(2, 3, 1, 1)},
           "D_detail": {"layers.0.weight": torch.zeros(1)}}
    torch.save(tar, tmp_path / "deca_model.tar")
    loaded = load_deca_encoder(tmp_path / "deca_model.tar", width=4, hidden=16)
    for k, v in state.items():
        assert torch.equal(loaded.state_dict()[k], v)
    out = loaded(torch.rand(1, 3, 64, 64))
    assert out.shape == (1, DECA_CODE_SIZE)
    # a missing key is refused
    bad = dict(state)
    bad.pop("layers.2.bias")
    torch.save({"E_flame": bad}, tmp_path / "bad.tar")
    with pytest.raises(InputError, match="missing"):
        load_deca_encoder(tmp_path / "bad.tar", width=4, hidden=16)
    with pytest.raises(MissingWeightsError, match="DECA"):
        load_deca_encoder(tmp_path / "nope.tar")


def test_bisenet_layout_loads_strictly_and_whitens(tmp_path):
    net = BiSeNet(n_classes=19, width=8)
    state = _randomise(net.state_dict())
    # checkpoints from old torch have no num_batches_tracked: still accepted
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    torch.save(old, tmp_path / "79999_iter.pth")
    loaded = load_bisenet(tmp_path / "79999_iter.pth", width=8)
    assert torch.equal(loaded.state_dict()["cp.arm16.conv.conv.weight"], state["cp.arm16.conv.conv.weight"])
    rgb = (np.random.default_rng(0).random((40, 56, 3)) * 255).astype(np.uint8)
    from caphuman.face.parsing import parse_face

    classes = parse_face(loaded, rgb)
    assert classes.shape == (40, 56) and classes.max() < 19
    fake = np.zeros((40, 56), np.int64)
    fake[:, :28] = 1  # skin kept
    fake[:, 28:] = 17  # hair removed
    out = face_only(rgb, fake)
    assert (out[:, 28:] == 255).all() and np.array_equal(out[:, :28], rgb[:, :28])
    assert set(REMOVED_CLASSES) == {0, 7, 8, 9, 14, 15, 16, 17, 18}


def test_facenet_layout_loads_strictly_and_standardises(tmp_path):
    kw = dict(width=0.0625, blocks=(1, 1, 1), embedding_size=512, num_classes=8631)
    net = InceptionResnetV1(**kw)
    state = _randomise(net.state_dict())
    torch.save(state, tmp_path / "20180402-114759-vggface2.pt")
    loaded = load_facenet(tmp_path / "20180402-114759-vggface2.pt", width=0.0625, blocks=(1, 1, 1))
    assert torch.equal(loaded.state_dict()["logits.weight"], state["logits.weight"])
    rgb = np.zeros((100, 80, 3), np.uint8)
    rgb[20:60, 20:60] = 255
    x = facenet_input(rgb, (20, 20, 60, 60))
    # a constant patch resamples to itself and (255 - 127.5) / 128 is exact in float32 (measured bit-equal);
    # np.allclose's default rtol 1e-5 (~80 units) is ample, a wrong standardisation is off by >= 1e-3
    assert x.shape == (3, 160, 160) and np.allclose(x, (255 - 127.5) / 128)
    whole = facenet_input(rgb, None)  # no face: still standardised (unlike the original)
    assert whole.min() == pytest.approx(-127.5 / 128)
    emb = loaded(torch.from_numpy(x)[None])
    # float32 norm of a normalised 512-vector: pairwise summation, <= log2(512) = 9 units (1.1e-6) + 2 for the
    # division; 1e-5 = 84 units; a missing L2 normalisation is off by O(1)
    assert emb.shape == (1, 512) and torch.allclose(emb.norm(dim=1), torch.ones(1), atol=1e-5)


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch " + _Evil.marker,))


@pytest.mark.parametrize("loader", ["deca", "bisenet", "facenet"])
def test_malicious_pickle_never_runs(tmp_path, loader):
    marker = tmp_path / "pwned"
    _Evil.marker = str(marker)
    path = tmp_path / "evil.pt"
    torch.save({"E_flame": {"x": _Evil()}}, path)
    fn = {"deca": load_deca_encoder, "bisenet": load_bisenet, "facenet": load_facenet}[loader]
    with pytest.raises(InputError, match="does not match the network"):  # payload dropped, not run
        fn(path)
    assert not marker.exists()
    raw = tmp_path / "evil.pkl"  # a plain pickle, not even a torch zip
    raw.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises((UnsafePickleError, InputError)):
        fn(raw)
    assert not marker.exists()


def test_clip_tokens_shape_from_tiny_config(tmp_path):
    from transformers import CLIPVisionConfig

    from caphuman.face.clip_image import ClipImageEncoder, clip_pixels

    cfg = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                           image_size=56, patch_size=14)
    enc = ClipImageEncoder.from_config(cfg)
    enc.model.save_pretrained(tmp_path)
    enc2 = ClipImageEncoder.from_pretrained(tmp_path)
    rgb = (np.random.default_rng(1).random((90, 60, 3)) * 255).astype(np.uint8)
    t1, t2 = enc.tokens(rgb), enc2.tokens(rgb)
    # the same weights through the same kernels after a save/load round trip (measured bit-equal); 1e-5 (~27
    # float32 units of |t| <= 3.1) allows a CPU to pick another kernel for a reloaded memory layout, while one
    # weight tensor not loaded changes the tokens by O(0.1)
    assert t1.shape == (1, 17, 32) and np.allclose(t1, t2, atol=1e-5)
    px = clip_pixels(np.full((50, 100, 3), 255, np.uint8), 56)
    assert px.shape == (1, 3, 56, 56)
    # float32 (x - mean) / std of a white image: ~2 units of 1.93 (4.6e-7; measured 1.4e-7); 1e-5 = 40 units,
    # swapped mean/std or channels differ by >= 0.05
    assert np.allclose(px[0, 0], (1 - 0.48145466) / 0.26862954, atol=1e-5)
