"""The CLIP image processor is transformers' PIL one everywhere (issue 8, item 6a): with torchvision
installed, transformers 5 would otherwise pick its torchvision backend, whose pixels differ from the
original's preprocessing by up to ~0.015."""

import importlib.util
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from diffusion_fixtures import tiny_dir  # noqa: F401

torch = pytest.importorskip("torch")

MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
SIZES = [(300, 241), (241, 300), (225, 500), (224, 224), (100, 77), (481, 333), (640, 479)]


def original_preprocessing(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """The original's CLIPProcessor (transformers 4.24), written out: shortest side -> size (long side
    int(size * long / short)), PIL bicubic, centre crop at ((w - size) // 2, (h - size) // 2), /255,
    (x - mean) / std in float32; (1, 3, size, size)."""
    h, w = rgb.shape[:2]
    if w <= h:
        new = (size, int(size * h / w))
    else:
        new = (int(size * w / h), size)
    img = Image.fromarray(rgb)
    if new != (w, h):
        img = img.resize(new, Image.BICUBIC)
    left, top = (new[0] - size) // 2, (new[1] - size) // 2
    x = np.asarray(img.crop((left, top, left + size, top + size)), np.float32) / np.float32(255)
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None]


def _images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in SIZES]


def _assert_original_pixels(processor, size=224):
    # PIL resamples uint8 in fixed-point integers (the same on every CPU); then x / 255 and (x - mean) / std
    # in float32 or float64 cast to float32: <= 2 units of |x| <= 2.15 (5e-7; measured 0). atol 1e-6 stays
    # far below one pixel level (1 / (255 x 0.27) = 0.015) or a bicubic-vs-bilinear resize (>= 1e-2).
    for rgb in _images():
        got = processor(images=Image.fromarray(rgb), return_tensors="pt").pixel_values.numpy()
        np.testing.assert_allclose(got, original_preprocessing(rgb, size), rtol=0, atol=1e-6)


def test_default_processor_is_pil_and_matches_the_original():
    from caphuman.face.clip_image import clip_pixels, pil_clip_processor, pil_processor_class

    proc = pil_clip_processor()
    assert type(proc) is pil_processor_class() and "Pil" in type(proc).__name__
    _assert_original_pixels(proc)
    for rgb in _images():  # the analysis path's own implementation agrees (same bound)
        np.testing.assert_allclose(clip_pixels(rgb), original_preprocessing(rgb), rtol=0, atol=1e-6)


def test_pipeline_saved_and_loaded_folders_use_the_pil_processor(tiny_dir, tmp_path):
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.face.clip_image import pil_processor_class

    index = json.loads((tiny_dir / "model_index.json").read_text())
    assert index["feature_extractor"] == ["transformers", pil_processor_class().__name__]
    pipe = CapHumanPipeline.from_pretrained(str(tiny_dir))
    assert type(pipe.feature_extractor) is pil_processor_class()
    _assert_original_pixels(pil_processor_class()(**{**pipe.feature_extractor.to_dict(),
                                                     "size": {"shortest_edge": 224},
                                                     "crop_size": {"height": 224, "width": 224}}))
    # A folder written before the fix names the generic class (the torchvision one when torchvision is
    # installed): loading it still gives the PIL processor, and saving it again records the PIL class.
    old = tmp_path / "old"
    shutil.copytree(tiny_dir, old)
    index["feature_extractor"] = ["transformers", "CLIPImageProcessor"]
    (old / "model_index.json").write_text(json.dumps(index))
    pipe = CapHumanPipeline.from_pretrained(str(old))
    assert type(pipe.feature_extractor) is pil_processor_class()
    pipe.save_pretrained(tmp_path / "resaved")
    saved = json.loads((tmp_path / "resaved" / "model_index.json").read_text())
    assert saved["feature_extractor"] == ["transformers", pil_processor_class().__name__]


def test_another_backend_is_replaced_by_its_pil_twin():
    """Whatever processor object the pipeline is given, it keeps its settings on the PIL backend."""
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.face.clip_image import pil_processor_class
    from caphuman.testing.tiny_model import build_components

    class OtherBackend(pil_processor_class()):  # stands in for a torchvision-backed processor
        pass

    comps = build_components(seed=0)
    comps["feature_extractor"] = OtherBackend(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    pipe = CapHumanPipeline(**comps)
    assert type(pipe.feature_extractor) is pil_processor_class()
    _assert_original_pixels(pipe.feature_extractor)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None, reason="torchvision is not installed")
def test_with_torchvision_installed_the_pipeline_still_uses_pil():
    from transformers import CLIPImageProcessor

    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.face.clip_image import pil_clip_processor, pil_processor_class
    from caphuman.testing.tiny_model import build_components

    fast = CLIPImageProcessor()  # transformers 5 + torchvision: the torchvision backend
    assert type(pil_clip_processor(fast)) is pil_processor_class()
    comps = build_components(seed=0)
    comps["feature_extractor"] = fast
    pipe = CapHumanPipeline(**comps)
    assert type(pipe.feature_extractor) is pil_processor_class()
    _assert_original_pixels(pipe.feature_extractor)
