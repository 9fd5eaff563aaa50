"""Identity-encoder seam: reference photo -> (FaceNet embedding, face-only image for CLIP).

The pipeline only needs two things about the reference person (reference §1.3 steps 7 and 9, §3):

* ``id_embedding``: (1, 512) L2-normalised FaceNet (InceptionResnetV1) embedding;
* ``face_only_image``: the photo at native resolution with non-face parsing classes painted white,
  which the pipeline's ``image_encoder`` turns into 257 CLIP tokens.

:class:`IdentityEncoder` wraps any recogniser/parser pair with these interfaces:

* ``recognizer(x) -> (B, 512)``, ``x``: (B, 3, 160, 160) face crops standardised as (v - 127.5) / 128;
* ``parser(x) -> logits (B, 19, H, W)`` (or a tuple whose first item is that), ``x``: (B, 3, H, W)
  in [0, 1] normalised with ImageNet mean/std; class ids as CelebAMask-HQ (0 background ... 18 hat).

A weights folder stores them in ``identity/identity.json`` as ``{"recognizer": {"class":
"module:Class", "kwargs": {...}, "weights": "recognizer.safetensors"}, "parser": {...}}``, so the
tiny stand-ins of :mod:`caphuman.testing.tiny_model` and the real ``caphuman.face`` classes load the
same way. Face detection (MTCNN) belongs to ``caphuman.face``; pass its crop function as ``crop``.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image

#: Parsing classes painted white (background, ears, earring, neck, necklace, cloth, hair, hat).
REMOVED_CLASSES = (0, 7, 8, 9, 14, 15, 16, 17, 18)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
FACENET_SIZE = 160


@dataclass
class IdentityResult:
    """``id_embedding``: torch (1, 512), unit norm. ``face_only_image``: RGB PIL image, native size."""

    id_embedding: Any
    face_only_image: Image.Image


def whole_image_crop(image: Image.Image) -> Image.Image:
    """Fallback crop: the whole image resized to 160x160 (bilinear). Real use: MTCNN's box."""
    return image.resize((FACENET_SIZE, FACENET_SIZE), Image.BILINEAR)


class IdentityEncoder:
    """Recogniser + face parser (+ a crop function), with :meth:`encode_identity` as the one entry point."""

    def __init__(self, recognizer, parser, crop: Callable[[Image.Image], Image.Image] = whole_image_crop):
        self.recognizer = recognizer.eval()
        self.parser = parser.eval()
        self.crop = crop

    def to(self, device) -> "IdentityEncoder":
        self.recognizer.to(device)
        self.parser.to(device)
        return self

    @property
    def device(self):
        return next(self.recognizer.parameters()).device

    def embed(self, image: Image.Image):
        """(1, 512) L2-normalised embedding of the face crop, standardised as (v - 127.5) / 128."""
        import torch

        crop = np.asarray(self.crop(image.convert("RGB")), dtype=np.float32)
        x = torch.from_numpy((crop - 127.5) / 128.0).permute(2, 0, 1)[None].to(self.device)
        with torch.no_grad():
            emb = self.recognizer(x).float()
        return torch.nn.functional.normalize(emb, dim=-1)

    def face_only(self, image: Image.Image) -> Image.Image:
        """Paint every non-face parsing class white, at the image's native resolution."""
        import torch

        rgb = np.asarray(image.convert("RGB"))
        x = torch.from_numpy(rgb.astype(np.float32) / 255.0)
        x = ((x - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)).permute(2, 0, 1)[None]
        with torch.no_grad():
            logits = self.parser(x.to(self.device))
        if isinstance(logits, (tuple, list)):
            logits = logits[0]
        if logits.shape[-2:] != rgb.shape[:2]:
            logits = torch.nn.functional.interpolate(logits, size=rgb.shape[:2], mode="bilinear", align_corners=True)
        labels = logits.argmax(1)[0].cpu().numpy()
        out = rgb.copy()
        out[np.isin(labels, REMOVED_CLASSES)] = 255
        return Image.fromarray(out)

    def encode_identity(self, face_image: Image.Image) -> IdentityResult:
        """Reference photo (PIL, native size) -> :class:`IdentityResult`."""
        return IdentityResult(self.embed(face_image), self.face_only(face_image))

    # ------------------------------------------------------------------ persistence
    def save(self, folder: str | Path, spec: dict[str, dict]) -> None:
        """Write ``identity.json`` + safetensors. ``spec``: {"recognizer"|"parser": {"class", "kwargs"}}."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = {}
        for name in ("recognizer", "parser"):
            module = getattr(self, name)
            fname = f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / fname))
            index[name] = {"class": spec[name]["class"], "kwargs": spec[name].get("kwargs", {}), "weights": fname}
        (folder / "identity.json").write_text(json.dumps(index, indent=2) + "\n")


def _import_class(path: str):
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def load_identity_encoder(folder: str | Path, device="cpu") -> IdentityEncoder:
    """Load ``folder/identity.json`` (strict state-dict loads). Raises ``MissingWeightsError``."""
    from safetensors.torch import load_file

    from caphuman.errors import MissingWeightsError

    folder = Path(folder)
    index_file = folder / "identity.json"
    if not index_file.is_file():
        raise MissingWeightsError(f"no identity encoders at {folder} (expected identity.json)")
    index = json.loads(index_file.read_text())
    modules = {}
    for name in ("recognizer", "parser"):
        entry = index[name]
        module = _import_class(entry["class"])(**entry.get("kwargs", {}))
        weights = folder / entry["weights"]
        if not weights.is_file():
            raise MissingWeightsError(f"missing {weights}")
        module.load_state_dict(load_file(str(weights)), strict=True)
        modules[name] = module.to(device)
    return IdentityEncoder(modules["recognizer"], modules["parser"])
