"""How CapFace residuals enter the UNet (reference §2.6, the standalone demo's semantics).

For every residual r_i (12 skips + mid):

1. ``r_i * strength``;
2. ``m_i`` = bilinear resize of the predicted mask to r_i's spatial size
   (``align_corners=False``, **no antialias**, as torchvision 0.14 did);
3. hard gate ``r_i * 1[m_i > 0.5]`` (strict), i.e. resize first, threshold second.

The A1111 fork's soft mask is *not* what the released demo does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: Strict threshold of the hard gate.
MASK_THRESHOLD = 0.5


def resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, ``align_corners=False``, no antialias; computed in float32. ``mask``: (B, 1, h, w)."""
    return F.interpolate(mask.float(), size=tuple(size), mode="bilinear", align_corners=False, antialias=False)


def gate_residuals(
    down_residuals: list[torch.Tensor],
    mid_residual: torch.Tensor,
    mask: torch.Tensor,
    strength: float = 1.0,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Scale every residual by ``strength``, then zero it where the resized mask is not > 0.5.

    ``mask``: (1 or B, 1, h, w) sigmoid output of the mask head. Returns new tensors.
    """

    def gate(r: torch.Tensor) -> torch.Tensor:
        keep = resize_mask(mask, r.shape[-2:]) > MASK_THRESHOLD
        return (r * strength) * keep.to(r.dtype)

    return [gate(r) for r in down_residuals], gate(mid_residual)
