"""Text alignment: CLIP's projected image and text embeddings of a generated image and its prompt.

Needs a whole CLIP model (transformers ``CLIPModel``: text tower + ``text_projection``, vision tower +
``visual_projection``), e.g. the downloaded ``checkpoints/clip-vit-large-patch14`` (the registry's
``clip``, openai/clip-vit-large-patch14). A folder missing either projection is refused rather than
loaded with randomly initialised heads.

Image: the project's CLIP preprocessing (:func:`caphuman.face.clip_image.clip_pixels`: shortest side ->
224 bicubic, centre crop, CLIP mean/std), the whole generated image. Text: the folder's tokenizer,
truncated at 77 tokens. Embedding: the pooled output (CLS token after ``post_layernorm`` / the EOS
token after ``final_layer_norm``) through the projection; the score is their cosine (see
:mod:`caphuman.evaluation.metrics` for the CLIP-S scale).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from caphuman.errors import MissingWeightsError

#: Weights a CLIP score cannot do without (a ``CLIPModel`` state dict prefix each).
NEEDED = ("text_projection.", "visual_projection.", "text_model.", "vision_model.")


class ClipTextScorer:
    """``model``: a transformers ``CLIPModel``; ``tokenizer``: its ``CLIPTokenizer``; ``name``: what to report."""

    def __init__(self, model, tokenizer, name: str = "clip", device: str = "cpu"):
        self.model = model.eval().to(device)
        self.tokenizer = tokenizer
        self.name = name
        self.device = device
        self._text: dict[str, np.ndarray] = {}

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, device: str = "cpu", name: str | None = None):
        """Load a CLIP folder (local files only). Raises MissingWeightsError naming what is missing."""
        from transformers import CLIPModel, CLIPTokenizer

        folder = Path(folder)
        if not folder.is_dir():
            raise MissingWeightsError(f"{folder} not found")
        try:
            model, info = CLIPModel.from_pretrained(str(folder), local_files_only=True, output_loading_info=True)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            raise MissingWeightsError(f"{folder} is not a loadable CLIP model folder ({first})") from None
        missing = [k for k in info.get("missing_keys", []) if k.startswith(NEEDED)]
        if missing:
            heads = sorted({k.split(".")[0] for k in missing})
            raise MissingWeightsError(f"{folder} has no weights for {', '.join(heads)} (a text+vision CLIPModel with "
                                      "both projections is needed; a vision-only tower cannot score text)")
        try:
            tok = CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise MissingWeightsError(f"{folder} has no usable CLIP tokenizer ({str(exc).splitlines()[0][:200]})") \
                from None
        return cls(model, tok, name or folder.name, device)

    @property
    def image_size(self) -> int:
        return int(self.model.config.vision_config.image_size)

    def image_embedding(self, rgb: np.ndarray) -> np.ndarray:
        """(D,) projected image embedding (not normalised) of an RGB uint8 image."""
        import torch

        from caphuman.face.clip_image import clip_pixels

        x = torch.from_numpy(clip_pixels(np.asarray(rgb, np.uint8), self.image_size)).to(self.device)
        x = x.to(next(self.model.parameters()).dtype)
        with torch.no_grad():
            pooled = self.model.vision_model(pixel_values=x).pooler_output
            return self.model.visual_projection(pooled)[0].float().cpu().numpy().astype(np.float64)

    def text_embedding(self, text: str) -> np.ndarray:
        """(D,) projected text embedding (not normalised), memoised per prompt."""
        if text not in self._text:
            import torch

            limit = min(int(self.model.config.text_config.max_position_embeddings), 77)
            enc = self.tokenizer([text], truncation=True, max_length=limit, padding=True, return_tensors="pt")
            with torch.no_grad():
                pooled = self.model.text_model(input_ids=enc["input_ids"].to(self.device),
                                               attention_mask=enc["attention_mask"].to(self.device)).pooler_output
                self._text[text] = self.model.text_projection(pooled)[0].float().cpu().numpy().astype(np.float64)
        return self._text[text]

    def cosine(self, rgb: np.ndarray, text: str) -> float:
        """Cosine of the image's and the text's CLIP embeddings, in [-1, 1]."""
        from caphuman.evaluation.metrics import cosine

        return cosine(self.image_embedding(rgb), self.text_embedding(text))


__all__ = ["ClipTextScorer", "NEEDED"]
