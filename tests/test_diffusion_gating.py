"""Mask gating against a hand computation (reference §2.6): scale, bilinear resize (no antialias), then > 0.5."""

import pytest

torch = pytest.importorskip("torch")

from caphuman.diffusion.gating import gate_residuals  # noqa: E402

# 4x4 mask; its 2x2 blocks were chosen so that resize-then-threshold and threshold-then-resize disagree.
MASK = torch.tensor([
    [0.90, 0.90, 0.51, 0.51],
    [0.10, 0.30, 0.51, 0.00],
    [0.50, 0.50, 0.70, 0.20],
    [0.50, 0.50, 0.20, 0.20],
])[None, None]


def test_downsized_gate_matches_hand_computation():
    # Bilinear 4 -> 2 with align_corners=False samples at source 2i + 0.5: the mean of each 2x2 block.
    #   block (0,0): (0.9+0.9+0.1+0.3)/4 = 0.55  -> keep   (threshold first would give 0.5 -> drop)
    #   block (0,1): (0.51*3+0)/4       = 0.3825 -> drop   (threshold first would give 0.75 -> keep)
    #   block (1,0): 0.5                         -> drop   (strict >)
    #   block (1,1): (0.7+0.2*3)/4      = 0.325  -> drop
    expected_keep = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    r = torch.full((1, 3, 2, 2), 2.0)
    mid = torch.full((1, 3, 2, 2), -1.0)
    down, mid_out = gate_residuals([r], mid, MASK, strength=0.5)
    assert torch.equal(down[0], 2.0 * 0.5 * expected_keep.expand(1, 3, 2, 2))
    assert torch.equal(mid_out, -1.0 * 0.5 * expected_keep.expand(1, 3, 2, 2))


def test_same_size_gate_is_strict_threshold():
    r = torch.ones(1, 1, 4, 4)
    (out,), _ = gate_residuals([r], r, MASK, strength=3.0)
    assert torch.equal(out, 3.0 * (MASK > 0.5).float())
    assert out[0, 0, 2, 0] == 0  # exactly 0.5 is dropped


def test_upsized_gate_matches_hand_computation():
    # One row of the mask varying along x: [0.2, 0.8, 0.45, 0.45] resized 4 -> 8 (align_corners=False):
    # x_out = 0..7 samples source x = x_out/2 - 0.25 (clamped at 0):
    #   0: 0.2 | 1: .75*.2+.25*.8=.35 | 2: .25*.2+.75*.8=.65 | 3: .75*.8+.25*.45=.7125
    #   4: .25*.8+.75*.45=.5375 | 5: .45 | 6: .45 | 7: .45
    row = torch.tensor([0.2, 0.8, 0.45, 0.45])
    mask = row.expand(4, 4)[None, None].contiguous()
    expected = torch.tensor([0, 0, 1, 1, 1, 0, 0, 0], dtype=torch.float32).expand(8, 8)
    (out,), _ = gate_residuals([torch.ones(1, 1, 8, 8)], torch.ones(1, 1, 1, 1), mask)
    assert torch.equal(out[0, 0], expected)


def test_resize_is_not_antialiased():
    # Top-left 2x2 block at 0.45, everything else 1.0. Plain bilinear 4 -> 2 gives 0.45 there (drop);
    # an antialiased resize blends in the 1.0 neighbours (~0.60, keep), as torchvision >= 0.17 would.
    mask = torch.ones(1, 1, 4, 4)
    mask[..., :2, :2] = 0.45
    (out,), _ = gate_residuals([torch.ones(1, 1, 2, 2)], torch.ones(1, 1, 2, 2), mask)
    assert torch.equal(out[0, 0], torch.tensor([[0.0, 1.0], [1.0, 1.0]]))
    aa = torch.nn.functional.interpolate(mask, size=(2, 2), mode="bilinear", align_corners=False, antialias=True)
    assert aa[0, 0, 0, 0] > 0.5  # the antialiased variant would have kept it: the test can tell them apart
