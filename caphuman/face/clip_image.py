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


def clip_pixels(rgb: np.ndarray, size: int = 224) -> np.ndarray:
    """(1, 3, size, size) float32 CLIP input for an RGB uint8 image."""
    from PIL import Image

    h, w = rgb.shape[:2]
    s = size / min(h, w)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    img = Image.fromarray(rgb).resize((nw, nh), Image.BICUBIC)
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

        return cls(CLIPVisionModel.from_pretrained(str(path), local_files_only=local_files_only,
                                                   use_safetensors=None))

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
