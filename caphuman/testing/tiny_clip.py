"""A tiny, randomly initialised, complete CLIP (text + vision towers and both projections) saved as a
transformers folder, for the evaluation's text-alignment tests. ``write_tiny_clip(out)`` -> ``out``."""

from __future__ import annotations

from pathlib import Path


def build_tiny_clip(seed: int = 0, projection_dim: int = 16):
    """(CLIPModel, CLIPTokenizer) with the tiny model's tokenizer and tower sizes."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    from caphuman.diffusion.sizes import ModelSizes
    from caphuman.testing.tiny_model import build_tokenizer

    sizes = ModelSizes.tiny()
    tok = build_tokenizer()
    text = dict(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                pad_token_id=tok.pad_token_id, **sizes.text)
    config = CLIPConfig(text_config=text, vision_config=dict(sizes.vision), projection_dim=projection_dim)
    torch.manual_seed(seed)
    return CLIPModel(config).eval(), tok


def write_tiny_clip(out: str | Path, seed: int = 0) -> Path:
    out = Path(out)
    model, tok = build_tiny_clip(seed)
    model.save_pretrained(out, safe_serialization=True)
    tok.save_pretrained(out)
    return out
