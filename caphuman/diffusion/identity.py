"""Identity-encoder seam: reference photo -> (FaceNet embedding, face-only image for CLIP).

The pipeline only needs two things about the reference person (reference §1.3 steps 7 and 9, §3):

* ``id_embedding``: (1, 512) L2-normalised FaceNet (InceptionResnetV1) embedding;
* ``face_only_image``: the photo at native resolution with non-face parsing classes painted white,
  which the pipeline's ``image_encoder`` turns into 257 CLIP tokens.

:class:`IdentityEncoder` wraps any recogniser/parser pair with these interfaces:

* ``recognizer(x) -> (B, 512)``, ``x``: (B, 3, 160, 160) face crops standardised as (v - 127.5) / 128;
* ``parser(x) -> logits (B, 19, H, W)`` (or a tuple whose first item is that), ``x``: (B, 3, H, W)
  in [0, 1] normalised with ImageNet mean/std; class ids as CelebAMask-HQ (0 background ... 18 hat).

A weights folder stores them in ``identity/identity.json`` as ``{"recognizer": {"class": NAME,
"kwargs": {...}, "weights": "recognizer.safetensors"}, "parser": {...}}``. ``NAME`` is a short name
of :data:`IDENTITY_CLASSES`, a fixed table of the project's own classes: a weights folder (which
may come from anywhere, e.g. a Hub repo) never names code to import or call. Face detection
(MTCNN) belongs to ``caphuman.face``; pass its crop function as ``crop``.
"""

from __future__ import annotations

import importlib
import json
import math
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
        """Write ``identity.json`` + safetensors. ``spec``: {"recognizer"|"parser": {"class", "kwargs"}},
        "class" a short name of :data:`IDENTITY_CLASSES`."""
        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        index = {}
        for name in ("recognizer", "parser"):
            module = getattr(self, name)
            fname = f"{name}.safetensors"
            save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(folder / fname))
            cls = _LEGACY_NAMES.get(spec[name]["class"], spec[name]["class"])
            if cls not in IDENTITY_CLASSES:
                raise ValueError(f"{cls!r} is not in IDENTITY_CLASSES")
            index[name] = {"class": cls, "kwargs": spec[name].get("kwargs", {}), "weights": fname}
        (folder / "identity.json").write_text(json.dumps(index, indent=2) + "\n")


#: The only classes an ``identity.json`` may name: short name -> (module, class, role).
IDENTITY_CLASSES: dict[str, tuple[str, str, str]] = {
    "facenet": ("caphuman.face.facenet", "InceptionResnetV1", "recognizer"),
    "bisenet": ("caphuman.face.parsing", "BiSeNet", "parser"),
    "tiny-recognizer": ("caphuman.testing.tiny_model", "TinyRecognizer", "recognizer"),
    "tiny-face-parser": ("caphuman.testing.tiny_model", "TinyFaceParser", "parser"),
}
#: Older folders spelled the same classes as "module:Class"; only these exact spellings are accepted.
_LEGACY_NAMES = {f"{m}:{c}": name for name, (m, c, _) in IDENTITY_CLASSES.items()}


def _checked_entry(index_file: Path, index: Any, role: str) -> tuple[str, dict, str]:
    """Validate one ``identity.json`` entry BEFORE anything is imported; returns (name, kwargs, weights)."""
    from caphuman.errors import InputError

    where = f"{index_file} ({role})"
    entry = index.get(role) if isinstance(index, dict) else None
    if not isinstance(entry, dict):
        raise InputError(f"{where}: missing or not an object; re-create the folder with `python -m caphuman convert`")
    name = entry.get("class")
    name = _LEGACY_NAMES.get(name, name) if isinstance(name, str) else name
    if not isinstance(name, str) or name not in IDENTITY_CLASSES or IDENTITY_CLASSES[name][2] != role:
        allowed = ", ".join(n for n, v in IDENTITY_CLASSES.items() if v[2] == role)
        raise InputError(f"{where}: class {str(entry.get('class'))[:80]!r} is not allowed (a weights folder "
                         f"cannot name code); use one of: {allowed}")
    kwargs = entry.get("kwargs", {})
    simple = (bool, int, float, str)
    if not isinstance(kwargs, dict) or not all(
            isinstance(k, str) and (isinstance(v, simple) or (isinstance(v, list) and all(isinstance(x, int) for x in v)))
            for k, v in kwargs.items()) or any(isinstance(v, float) and not math.isfinite(v) for v in kwargs.values()):
        raise InputError(f"{where}: kwargs must be an object of plain numbers/strings")
    weights = entry.get("weights")
    if not isinstance(weights, str) or Path(weights).name != weights or not weights.endswith(".safetensors"):
        raise InputError(f"{where}: weights must be a .safetensors file name inside {index_file.parent}")
    return name, kwargs, weights


def load_identity_encoder(folder: str | Path, device="cpu") -> IdentityEncoder:
    """Load ``folder/identity.json`` (strict state-dict loads). Raises ``MissingWeightsError``."""
    from safetensors.torch import load_file

    from caphuman.errors import MissingWeightsError

    from caphuman.errors import InputError

    folder = Path(folder)
    index_file = folder / "identity.json"
    if not index_file.is_file():
        raise MissingWeightsError(f"no identity encoders at {folder} (expected identity.json)")
    try:
        index = json.loads(index_file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InputError(f"{index_file} is not valid JSON; re-create the folder with `python -m caphuman convert`") \
            from None
    entries = {role: _checked_entry(index_file, index, role) for role in ("recognizer", "parser")}
    modules = {}
    for role, (name, kwargs, weights_name) in entries.items():
        module_name, class_name, _ = IDENTITY_CLASSES[name]
        try:
            module = getattr(importlib.import_module(module_name), class_name)(**kwargs)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{index_file} ({role}): bad kwargs for {name}: {exc}") from None
        weights = folder / weights_name
        if not weights.is_file():
            raise MissingWeightsError(f"missing {weights}")
        from safetensors import SafetensorError

        try:
            module.load_state_dict(load_file(str(weights)), strict=True)
        except (SafetensorError, RuntimeError, OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
            raise InputError(f"{weights} is broken or does not match {name} ({first}); re-create the folder") \
                from None
        modules[role] = module.to(device)
    return IdentityEncoder(modules["recognizer"], modules["parser"])
