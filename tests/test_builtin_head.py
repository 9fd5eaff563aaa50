"""Tests of the built-in open head model (geometry, rig, landmarks, committed asset)."""

from pathlib import Path

import numpy as np
import pytest

from caphuman.head.builtin import DEFAULT_OUT, build_builtin_head
from caphuman.head.builtin_rig import EXPRESSION_NAMES
from caphuman.head.model_data import HeadModelData

REPO = Path(__file__).resolve().parents[1]
ASSET = REPO / DEFAULT_OUT
# Tolerances below are facts of the asset's construction (mirror symmetry, zeros by design, locality),
# evaluated in float64 from the float32 asset: float32 storage rounds coordinates (<= 0.2 m) by <= 1.5e-8 and
# weights (<= 1) by <= 6e-8, float64 arithmetic adds ~1e-16. The thresholds sit between that rounding and
# the smallest intended feature: 1e-6 (1 micrometre / a weight of 1e-6) for "exactly zero / on the
# mid-plane", 1e-4 m for mirrored or centred landmarks (built symmetric: a real asymmetry is >= 1 mm),
# millimetres where a region is meant to move.
MIRROR_PAIRS = [(0, 16), (3, 13), (6, 10), (17, 26), (19, 24), (21, 22), (31, 35), (32, 34), (36, 45),
                (37, 44), (38, 43), (39, 42), (40, 47), (41, 46), (48, 54), (49, 53), (50, 52), (55, 59),
                (56, 58), (61, 63), (65, 67)]


@pytest.fixture(scope="module")
def head() -> HeadModelData:
    return build_builtin_head()


def _arrays(h: HeadModelData) -> dict:
    return {k: np.asarray(getattr(h, k)) for k in h.__dataclass_fields__}


def _landmarks(h: HeadModelData, v: np.ndarray) -> np.ndarray:
    tri = v[h.f[h.full_lmk_faces_idx]]
    return (tri * h.full_lmk_bary_coords[:, :, None]).sum(1)


def _expr(h: HeadModelData, name: str) -> np.ndarray:
    return h.shapedirs[:, :, h.num_shape + EXPRESSION_NAMES.index(name)].astype(float)


def test_deterministic(head):
    # the same code in the same process on the same inputs: bit for bit (no tolerance needed)
    again = _arrays(build_builtin_head())
    for k, a in _arrays(head).items():
        assert np.array_equal(a, again[k]), k
        if isinstance(a, np.ndarray) and a.dtype.kind in "fi":
            assert a.tobytes() == again[k].tobytes(), k


def test_committed_asset_is_fresh(head):
    saved = HeadModelData.load_npz(ASSET)
    fresh = _arrays(head)
    for k, a in _arrays(saved).items():
        stale = f"{ASSET} is stale in {k}: rebuild with python -m caphuman.head.builtin"
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            # The asset was built on another machine: the build runs in float64 (BLAS, libm: last bits may
            # differ by CPU) and casts to float32, so a value within a float64 rounding of a float32 midpoint
            # may land one float32 ulp away. Allow exactly that (measured: bit-equal here and under
            # OPENBLAS_CORETYPE=Haswell/Nehalem/Sandybridge/Zen and NPY_DISABLE_CPU_FEATURES down to X86_V2);
            # a changed construction moves values by far more than an ulp.
            assert a.shape == fresh[k].shape and a.dtype == fresh[k].dtype, stale
            assert (np.abs(a - fresh[k]) <= np.spacing(np.abs(a))).all(), stale
        else:
            assert np.array_equal(a, fresh[k]), stale  # indices, topology, names: exact
    assert ASSET.stat().st_size < 3 * 2**20


def test_validate_and_sizes(head):
    head.validate()
    assert head.num_vertices >= 4000
    assert head.num_shape >= 10 and head.num_expression >= 12
    assert head.name == "caphuman-builtin-head" and "Apache-2.0" in head.licence
    assert head.vt.min() >= 0 and head.vt.max() <= 1
    assert 0 <= head.albedo_mean.min() and head.albedo_mean.max() <= 1
    tri = head.v_template[head.f]
    area = np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1) / 2
    assert area.min() > 1e-10, "degenerate triangle"
    assert list(head.kintree_table[0]) == [-1, 0, 1, 1, 1]


def test_size_and_orientation(head):
    v = head.v_template
    width = v[:, 0].max() - v[:, 0].min()
    assert 0.13 < width < 0.19
    lm = _landmarks(head, v)
    face = lm[19, 1] - lm[8, 1]  # brow to chin
    assert 0.10 < face < 0.15
    assert abs(head.J_regressor[1] @ v[:, 0]) < 1e-6  # neck joint on the mid-plane (see the note at the top)


def test_outward_normals(head):
    v = head.v_template.astype(float)
    tri = v[head.f]
    n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    centre = v.mean(0)
    out = np.einsum("ij,ij->i", n, tri.mean(1) - centre)
    assert (out > 0).mean() > 0.93
    # the whole (closed-ish) surface encloses a positive volume
    vol = np.einsum("ij,ij->i", tri[:, 0], np.cross(tri[:, 1], tri[:, 2])).sum() / 6
    assert vol > 0


def test_landmarks(head):
    lm = _landmarks(head, head.v_template.astype(float))
    assert np.argmax(lm[:, 2]) == 30, "nose tip must be the most forward landmark"
    assert lm[36:48, 1].min() > lm[48:68, 1].max(), "eyes above the mouth"
    assert lm[17:27, 1].min() > lm[36:48, 1].max() - 0.002, "brows above the eyes"
    assert lm[45, 0] > 0 > lm[36, 0] and lm[16, 0] > 0 > lm[0, 0] and lm[54, 0] > 0 > lm[48, 0]
    for a, b in MIRROR_PAIRS:
        mirrored = lm[b] * np.array([-1, 1, 1])
        assert np.linalg.norm(lm[a] - mirrored) < 1e-4, (a, b)
    for k in (8, 27, 28, 29, 30, 33, 51, 57, 62, 66):
        assert abs(lm[k, 0]) < 1e-4, k
    # static rows are the full embedding's 17..67; yaw row 0 equals the static contour
    assert np.array_equal(head.static_lmk_faces_idx, head.full_lmk_faces_idx[17:])
    assert np.array_equal(head.dynamic_lmk_faces_idx[0], head.full_lmk_faces_idx[:17])
    assert np.allclose(head.dynamic_lmk_bary_coords[0], head.full_lmk_bary_coords[:17])


def test_dynamic_contour_follows_silhouette(head):
    v = head.v_template.astype(float)
    tri = v[head.f[head.dynamic_lmk_faces_idx]]
    pts = (tri * head.dynamic_lmk_bary_coords[..., None]).sum(2)  # (79, 17, 3)
    a = np.radians(30)
    rot_x = lambda p: p[..., 0] * np.cos(a) + p[..., 2] * np.sin(a)
    # yaw +30: the +x side (points 9..16) turns away; its contour is no less outward than static
    assert (rot_x(pts[30, 9:16]) >= rot_x(pts[0, 9:16]) - 1e-9).all()
    assert (rot_x(pts[30, 9:16]) > rot_x(pts[0, 9:16]) + 1e-4).any()
    row = 39 + 30  # yaw -30
    rot_n = lambda p: p[..., 0] * np.cos(-a) + p[..., 2] * np.sin(-a)
    assert (rot_n(pts[row, 1:8]) <= rot_n(pts[0, 1:8]) + 1e-9).all()


def test_skinning_weights(head):
    W = head.weights.astype(float)
    # 5 float32 weights per vertex: their float64 sum is 1 within 5 x 6e-8; 1e-5 still flags an unnormalised row
    assert np.allclose(W.sum(1), 1.0, atol=1e-5) and W.min() >= -1e-6
    v = head.v_template
    lm = _landmarks(head, v)
    vid = lambda k: head.f[head.full_lmk_faces_idx[k]][np.argmax(head.full_lmk_bary_coords[k])]
    assert W[vid(8), 2] > 0.9 and W[vid(57), 2] > 0.9 and W[vid(66), 2] > 0.9  # chin, lower lip
    assert W[vid(51), 2] < 0.05 and W[vid(62), 2] < 0.05  # upper lip
    forehead = (v[:, 1] > 0.05) & (v[:, 2] > 0.03)
    assert W[forehead, 2].max() < 1e-6
    assert W[vid(27), 2] < 1e-6
    # eyeballs follow their own eye joints, left = +x
    J = head.J_regressor.astype(float) @ v.astype(float)
    assert J[3, 0] > 0.02 and J[4, 0] < -0.02 and abs(J[3, 0] + J[4, 0]) < 1e-6
    eye_l = W[:, 3] > 0.99
    assert eye_l.sum() > 50 and np.allclose(v[eye_l].mean(0)[:2], J[3, :2], atol=0.004)
    # joints: root below the neck joint, jaw in front of the neck joint and on the mid-plane
    assert J[0, 1] < J[1, 1] < J[2, 1] < J[3, 1]
    assert abs(J[2, 0]) < 1e-6 and J[2, 2] > J[1, 2]
    assert np.allclose(head.J_regressor.sum(1), 1.0, atol=1e-5) and head.J_regressor.min() >= 0


def test_expression_components_move_their_regions(head):
    v = head.v_template.astype(float)
    lm0 = _landmarks(head, v)
    d = lambda name: _landmarks(head, v + _expr(head, name)) - lm0
    close = d("eyes_close")
    for k in (37, 38, 43, 44):
        assert close[k, 1] < -0.002, k
    lid_gap = _landmarks(head, v + _expr(head, "eyes_close"))
    assert np.abs(lid_gap[[37, 38, 43, 44], 1] - lid_gap[[41, 40, 47, 46], 1]).max() < 0.0015
    assert np.abs(close[[40, 41, 46, 47]]).max() < 1e-6
    assert (d("squint")[[40, 41, 46, 47], 1] > 0.0005).all()
    smile = d("smile")
    assert smile[54, 1] > 0.002 and smile[48, 1] > 0.002 and smile[54, 0] > 0 > smile[48, 0]
    assert d("frown")[54, 1] < -0.002
    pucker = d("pucker")
    assert pucker[54, 0] < -0.002 and pucker[48, 0] > 0.002 and pucker[51, 2] > 0.001
    assert d("upper_lip_raise")[51, 1] > 0.002 and abs(d("upper_lip_raise")[57, 1]) < 5e-4
    assert d("lower_lip_down")[57, 1] < -0.002 and abs(d("lower_lip_down")[51, 1]) < 5e-4
    assert (d("brow_raise")[17:27, 1] > 0.002).all()
    furrow = d("brow_furrow")
    assert furrow[21, 0] > 0.001 and furrow[22, 0] < -0.001 and furrow[21, 1] < 0
    cheek = (np.abs(v[:, 0]) > 0.03) & (v[:, 1] > -0.06) & (v[:, 1] < -0.02) & (v[:, 2] > 0.03)
    puff = _expr(head, "cheek_puff")[cheek]
    assert (puff[:, 0] * np.sign(v[cheek, 0])).max() > 0.003
    # local: the lid component leaves the mouth alone, mouth components leave the brows alone
    assert np.abs(close[48:]).max() < 1e-9
    assert np.abs(smile[17:27]).max() < 1e-4
    # no expression moves the eyeballs
    eyes = head.weights[:, 3:].sum(1) > 0.99
    assert np.abs(head.shapedirs[eyes, :, head.num_shape:]).max() == 0


def test_mouth_slit_opens_with_jaw(head):
    v = head.v_template.astype(float)
    J = head.J_regressor.astype(float) @ v
    a = np.radians(15)
    R = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    w = head.weights[:, 2:3].astype(float)
    posed = (1 - w) * v + w * ((v - J[2]) @ R.T + J[2])
    lm = _landmarks(head, posed)
    assert lm[62, 1] - lm[66, 1] > 0.008  # inner lips part
    lm0 = _landmarks(head, v)
    moved = np.linalg.norm(lm - lm0, axis=1)
    assert moved[48] < 0.6 * moved[57] and moved[54] < 0.6 * moved[57]  # corners follow only partly
    assert moved[51] < 1e-6 and moved[8] > 0.015


def test_shape_components_are_plausible(head):
    S = head.shapedirs[:, :, : head.num_shape]
    mag = np.linalg.norm(S, axis=1).max(0)
    assert (mag > 0.0015).all() and (mag < 0.008).all()
