"""Shared tiny-model fixtures for the diffusion tests (imported by tests/test_diffusion_*.py)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.fixture(scope="session")
def tiny_pipe():
    """In-memory tiny CapHumanPipeline (fp32, CPU, random weights, seed 0)."""
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.testing.tiny_model import build_components

    pipe = CapHumanPipeline(**build_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory):
    """Tiny model written to disk (diffusers folder + identity + original layout)."""
    from caphuman.testing.tiny_model import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)


@pytest.fixture(scope="session")
def conditioning():
    """Synthetic conditioning: 64x64 hint with a head-like blob, unit id embedding, CLIP tokens (1, 17, 48)."""
    g = torch.Generator().manual_seed(123)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, 64), torch.linspace(-1, 1, 64), indexing="ij")
    inside = ((xx ** 2 + yy ** 2) < 0.5).float()
    hint = torch.randn(9, 64, 64, generator=g) * inside
    id_embedding = torch.nn.functional.normalize(torch.randn(1, 512, generator=g), dim=-1)
    image_embeds = torch.randn(1, 17, 48, generator=g)
    return dict(hint=hint, id_embedding=id_embedding, image_embeds=image_embeds)
