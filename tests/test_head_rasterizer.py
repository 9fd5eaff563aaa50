"""The numba rasteriser against a slow brute-force reference and the pixel-centre convention."""

import numpy as np
import pytest

from caphuman.render.camera import ndc_to_pixels, pixels_to_ndc
from caphuman.render.rasterizer import rasterize, to_pixel_space


def brute_force(ndc, faces, H, W):
    """Every pixel against every face, float64, independent formulation (solve 2x2 systems)."""
    m = min(H, W)
    cols = (-1.0 + (2 * np.arange(W) + 1) / W) * W / m
    rows = (1.0 - (2 * np.arange(H) + 1) / H) * H / m
    X, Y = np.meshgrid(cols, rows)
    P = np.stack([X, Y], -1)  # (H, W, 2) sample points in NDC
    face_idx = np.full((H, W), -1)
    bary = np.zeros((H, W, 3))
    best = np.full((H, W), -np.inf)
    for f, (a, b, c) in enumerate(faces):
        A = np.array([[ndc[b, 0] - ndc[a, 0], ndc[c, 0] - ndc[a, 0]],
                      [ndc[b, 1] - ndc[a, 1], ndc[c, 1] - ndc[a, 1]]])
        if abs(np.linalg.det(A)) < 1e-14:
            continue
        rhs = (P - ndc[a, :2]).reshape(-1, 2).T
        l12 = np.linalg.solve(A, rhs).T.reshape(H, W, 2)
        w = np.concatenate([1 - l12.sum(-1, keepdims=True), l12], -1)
        inside = (w >= -1e-9).all(-1)
        z = w @ np.array([ndc[a, 2], ndc[b, 2], ndc[c, 2]])
        take = inside & (z > best)
        best[take] = z[take]
        face_idx[take] = f
        bary[take] = w[take]
    return face_idx, bary, best


@pytest.mark.parametrize("seed,H,W", [(0, 24, 24), (1, 20, 31), (2, 33, 17)])
def test_matches_brute_force_on_random_meshes(seed, H, W):
    rng = np.random.default_rng(seed)
    V, F = 40, 60
    ndc = rng.uniform(-1.1, 1.1, (V, 3))
    faces = rng.integers(0, V, (F, 3))
    got = rasterize(ndc, faces, H, W)
    ref_idx, ref_bary, ref_z = brute_force(ndc, faces, H, W)
    # Coverage identical; face ids identical except where two faces tie in depth.
    assert np.array_equal(got.face_idx >= 0, ref_idx >= 0)
    differ = got.face_idx != ref_idx
    # The rasteriser (numba, compiled for the host CPU) stores barycentrics and depths in float32, the
    # reference solves in float64: values <= 1.1 agree to a few float32 units (measured 3e-8). 1e-5 (~80 units) allows a tie between two faces to go either
    # way; a wrong triangle or a perspective slip is off by >= 1e-2.
    if differ.any():
        assert np.allclose(got.depth[differ], ref_z[differ], atol=1e-5)
    same = (~differ) & (ref_idx >= 0)
    assert same.sum() > 0.2 * H * W
    np.testing.assert_allclose(got.bary[same], ref_bary[same], atol=1e-5)  # same bound as the depths
    assert (got.bary[got.face_idx < 0] == 0).all()


def test_pixel_centres_follow_the_reference_rule():
    H = W = 8
    # Pixel i's centre is at x = -1 + (2i + 1)/W; rows count down from y = +1.
    cr = np.array([[0, 0], [7, 7], [3, 5]], float)
    ndc = pixels_to_ndc(cr, H, W)
    # float64 both sides with dyadic values (eighths): exact, under assert_allclose's default rtol 1e-7
    np.testing.assert_allclose(ndc[:, 0], -1 + (2 * cr[:, 0] + 1) / W)
    np.testing.assert_allclose(ndc[:, 1], 1 - (2 * cr[:, 1] + 1) / H)
    np.testing.assert_allclose(ndc_to_pixels(ndc, H, W), cr)
    np.testing.assert_allclose(to_pixel_space(np.c_[ndc, np.zeros(3)], H, W)[:, :2], cr)


def test_nearest_face_wins_and_orientation():
    # Two overlapping triangles; the one with larger z (toward the camera) must win.
    ndc = np.array([[-1, -1, 0.0], [1, -1, 0.0], [0, 1, 0.0], [-1, -1, 0.5], [1, -1, 0.5], [0, 1, 0.5]])
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    r = rasterize(ndc, faces, 16, 16)
    assert (r.face_idx[r.mask] == 1).all()
    # The triangle's apex is at the top: the top row is mostly empty, the bottom row full.
    assert r.mask[-1].sum() > r.mask[0].sum()


def test_skips_degenerate_and_rejects_bad_size():
    ndc = np.array([[0, 0, 0], [0.5, 0.5, 0], [1, 1, 0.0]])
    r = rasterize(ndc, np.array([[0, 1, 2]]), 8, 8)
    assert not r.mask.any()
    with pytest.raises(ValueError):
        rasterize(ndc, np.array([[0, 1, 2]]), 0, 8)
