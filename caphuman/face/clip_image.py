"""CLIP ViT-L/14 image tokens of the face-only image (reference §3.1).

Output: ``last_hidden_state`` (1, 257, 1024) float32 for ViT-L/14 at 224 (256 patches + CLS),
i.e. the encoder output *without* ``post_layernorm``; no pooling, no projection.
Pre-processing like ``CLIPProcessor``: RGB, shortest side -> 224 (bicubic), centre crop 224,
/255, mean (0.48145466, 0.4578275, 0.40821073), std (0.26862954, 0.26130258, 0.27577711).
"""

from __future__ import annotations

import os

import numpy as np

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

#: The processor settings that define the preprocessing (copied when switching a processor to the PIL backend).
PROCESSOR_KEYS = ("do_convert_rgb", "do_resize", "size", "resample", "do_center_crop", "crop_size", "do_rescale",
                  "rescale_factor", "do_normalize", "image_mean", "image_std")


def pil_processor_class():
    """transformers' PIL ("slow") CLIP image processor class: ``CLIPImageProcessorPil`` (transformers 5;
    there ``CLIPImageProcessor`` is the torchvision backend whenever torchvision is installed), or
    ``CLIPImageProcessor`` on transformers 4 (where it is the PIL one)."""
    try:
        from transformers import CLIPImageProcessorPil
    except ImportError:  # transformers 4.x
        from transformers import CLIPImageProcessor as CLIPImageProcessorPil
    return CLIPImageProcessorPil


def pil_clip_processor(processor=None, **settings):
    """The PIL CLIP image processor: ``processor`` itself when it already is one, else a PIL processor
    with its settings (any backend, e.g. the torchvision one transformers 5 picks when torchvision is
    installed, whose pixels differ by up to ~0.015 from the original's PIL preprocessing); ``settings``
    override. With neither: the ViT-L/14 defaults (224, bicubic, CLIP mean/std)."""
    cls = pil_processor_class()
    if processor is not None and type(processor) is cls and not settings:
        return processor
    base = {}
    if processor is not None:
        d = processor.to_dict()
        base = {k: d[k] for k in PROCESSOR_KEYS if k in d}
    return cls(**{**base, **settings})


def clip_pixels(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """(1, 3, size, size) float32 CLIP input for an RGB uint8 image, computed as the original's
    preprocessing does: shortest side -> ``size`` (long side truncated, bicubic), centre crop (offset
    rounded down), /255, normalise."""
    from PIL import Image

    h, w = rgb.shape[:2]
    nw, nh = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    img = Image.fromarray(rgb)
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.BICUBIC)
    left, top = (nw - size) // 2, (nh - size) // 2
    img = img.crop((left, top, left + size, top + size))
    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return x.transpose(2, 0, 1)[None].copy()


class ClipImageEncoder:
    """Wraps a transformers ``CLIPVisionModel``. Build with :meth:`from_pretrained` (a local
    folder or Hub id; ``local_files_only`` by default, so nothing is downloaded unasked) or
    from a ``CLIPVisionConfig`` (random weights; tests)."""

    def __init__(self, model):
        self.model = model.eval()

    @classmethod
    def from_config(cls, config) -> "ClipImageEncoder":
        from transformers import CLIPVisionModel

        return cls(CLIPVisionModel(config))

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, local_files_only: bool = True) -> "ClipImageEncoder":
        from transformers import CLIPVisionModel

        from caphuman.weights.safe_load import load_pretrained

        return cls(load_pretrained(CLIPVisionModel.from_pretrained, path, "CLIP image encoder",
                                   local_files_only=local_files_only, use_safetensors=None))

    @property
    def image_size(self) -> int:
        return int(self.model.config.image_size)

    def tokens(self, rgb: np.ndarray) -> np.ndarray:
        """(1, 1 + (size/patch)^2, hidden) float32 ``last_hidden_state`` for an RGB uint8 image."""
        import torch

        x = torch.from_numpy(clip_pixels(rgb, self.image_size))
        with torch.no_grad():
            out = self.model(pixel_values=x)
        return out.last_hidden_state.float().numpy()
