"""Pose, expression, lighting and placement conventions, on the built-in and a synthetic head."""

import warnings

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from caphuman.controls import HeadState
from caphuman.errors import InputError
from caphuman.render.shading import sh_shading

SIZE = 128


@pytest.fixture(params=["builtin", "synthetic"])
def pipe(request):
    return request.getfixturevalue(f"{request.param}_pipeline")


def state(**pose):
    s = HeadState()
    for k, v in pose.items():
        setattr(s.pose, k, v)
    return s


def test_zero_pose_reproduces_template(pipe):
    posed = pipe.pose(HeadState())
    # identity transforms blended by float32 weights summing to 1 +- a few units: ~1 float32 unit of |v| <= 0.18
    # (2e-8; measured 7e-9). 1e-6 is ~50 units; any non-zero default pose moves vertices >= 1e-4.
    np.testing.assert_allclose(posed.vertices, pipe.data.v_template, atol=1e-6)


def test_global_rotation_is_rigid_about_the_root(pipe):
    posed = pipe.pose(state(yaw=25, pitch=-10, roll=15))
    R = Rotation.from_euler("YXZ", [25, 10, -15], degrees=True).as_matrix()  # Ry(y) Rx(-p) Rz(-r)
    j0 = pipe.data.J_regressor[0] @ pipe.data.v_template
    expected = (pipe.data.v_template - j0) @ R.T + j0
    # float32 rotation (3-term dot products) vs float64: a few units of |v| <= 0.19 (measured <= 3 units,
    # 6.5e-8); 1e-5 is ~450 units, while a 0.1 degree convention slip moves the face by >= 3e-4.
    np.testing.assert_allclose(posed.vertices, expected, atol=1e-5)


def mean_x_normals(pipe, **pose):
    """Mean x-normal over all covered pixels and over the inner face (box of landmarks 17-67)."""
    r = pipe.render(state(**pose), SIZE)
    (c0, r0), (c1, r1) = r.landmarks_px[17:].min(0).astype(int), r.landmarks_px[17:].max(0).astype(int)
    face = np.zeros_like(r.mask)
    face[r0:r1 + 1, c0:c1 + 1] = True
    return r.hint[0][r.mask].mean(), r.hint[0][r.mask & face].mean()


def test_yaw_flips_the_mean_x_normal(builtin_pipeline):
    pipe = builtin_pipeline  # (a sphere would look the same at any yaw)
    (all_r, face_r), (all_l, face_l) = mean_x_normals(pipe, yaw=30), mean_x_normals(pipe, yaw=-30)
    # The sign flips with the yaw; over the whole head it is dominated by the side of the skull
    # that swings into view, while the face itself turns toward the side the nose points to.
    # Geometric, not rounding: a mirrored pose of the symmetric head rasterises onto a 128 px grid that is
    # not exactly mirrored (silhouette pixels differ by up to one column: ~1% of the mean), so +-0.02 / 0.01
    # on a mean of ~0.3; a yaw sign error gives all_r + all_l ~ 2 x 0.3.
    assert all_r * all_l < 0 and abs(all_r + all_l) < 0.02
    assert face_r > 0.1 and face_l < -0.1
    assert abs(mean_x_normals(pipe)[0]) < 0.01  # symmetric at zero yaw


def test_pitch_moves_the_nose_up_and_roll_is_clockwise(pipe):
    nose = lambda s: pipe.pose(s).landmarks_ndc[30]  # noqa: E731
    assert nose(state(pitch=20))[1] > nose(state())[1] + 0.01
    assert nose(state(yaw=20))[0] > nose(state())[0] + 0.01
    lm = pipe.pose(state(roll=20)).landmarks_ndc
    # Clockwise in the image: the image-right eye corner (45) drops below the image-left one (36).
    assert lm[45, 1] < lm[36, 1] - 0.01
    lm0 = pipe.pose(state()).landmarks_ndc
    assert abs(lm0[45, 1] - lm0[36, 1]) < 1e-3  # asset symmetry (mirror pairs within 1e-4 m); roll 20 gives > 0.01


def test_light_from_the_right_brightens_the_right_half(pipe):
    s = HeadState()
    s.lighting.azimuth, s.lighting.elevation = 90, 0
    r = pipe.render(s, SIZE)
    lum = r.hint[6:9].mean(0)
    cols = np.nonzero(r.mask.any(0))[0]
    mid = (cols.min() + cols.max()) // 2
    left = lum[:, :mid][r.mask[:, :mid]].mean()
    right = lum[:, mid:][r.mask[:, mid:]].mean()
    assert right > left * 1.3


def test_hint_follows_the_reference_layout(pipe):
    s = HeadState()
    s.lighting.sh = (np.random.default_rng(0).uniform(-0.5, 1.0, (9, 3))).tolist()
    r = pipe.render(s, SIZE)
    hint, mask = r.hint, r.mask
    assert hint.shape == (9, SIZE, SIZE) and hint.dtype == np.float32
    assert (hint[:, ~mask] == 0).all(), "background must be exactly 0"
    assert mask.mean() > 0.05
    n = hint[0:3, mask].T
    assert np.abs(n).max() <= 1.0 + 1e-5  # float32 unit vectors: ~2 units (2.4e-7) over 1; 1e-5 = 84 units
    assert np.linalg.norm(n, axis=1).max() <= 1.0 + 1e-5  # interpolated unit vectors, not renormalised
    # shaded = albedo x SH shading of the normal image, with the §4.5 constants written out here.
    c = np.array([0.28209479, 1.02332671, 1.02332671, 1.02332671, 0.85808553, 0.85808553,
                  0.85808553, 0.42904277, 0.24770796])
    x, y, z = n.T.astype(np.float64)
    basis = np.stack([np.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], 1)
    shading = (basis * c) @ np.asarray(s.lighting.sh)
    # the float32 image vs albedo x float64 shading: the float32 SH sum and product round to a few units
    # (measured 1e-7 on values <= 1.3, < 1 unit); rtol 1e-4 (~800 units) is loose on purpose (the exact
    # constants are checked on the next line); swapped colour channels or a missing albedo are O(0.1).
    np.testing.assert_allclose(hint[6:9, mask].T, hint[3:6, mask].T * shading, rtol=1e-4, atol=1e-5)
    # float64 both sides; the only difference is the 8-decimal constants written above (each within 5e-9,
    # 9 terms x |sh| <= 1: <= 4.5e-8; measured 9e-9). A constant wrong in its 6th digit is caught.
    np.testing.assert_allclose(sh_shading(n, s.lighting.sh), shading, rtol=1e-6, atol=1e-7)


def landmarks(pipe, **controls):
    s = HeadState(expression_controls=controls)
    return pipe.pose(s).landmarks


@pytest.mark.parametrize("name", ["smile", "brow_raise", "brow_furrow", "eyes_closed", "pucker", "mouth_open"])
def test_semantic_expressions_move_the_right_landmarks(pipe, name):
    lm0 = landmarks(pipe)
    lm1 = landmarks(pipe, **{name: 1.0})
    iod = np.linalg.norm(lm0[45] - lm0[36])
    if name == "smile":
        corners_up = ((lm1[48, 1] - lm0[48, 1]) + (lm1[54, 1] - lm0[54, 1])) / 2
        assert corners_up > 0.02 * iod
        frown = landmarks(pipe, smile=-1.0)
        assert (frown[48, 1] + frown[54, 1]) / 2 < (lm0[48, 1] + lm0[54, 1]) / 2
    elif name == "brow_raise":
        assert (lm1[17:27, 1] - lm0[17:27, 1]).mean() > 0.03 * iod
    elif name == "brow_furrow":
        assert np.linalg.norm(lm1[21] - lm1[22]) < np.linalg.norm(lm0[21] - lm0[22]) - 0.01 * iod
    elif name == "eyes_closed":
        gap = lambda lm: np.mean([np.linalg.norm(lm[u] - lm[l]) for u, l in [(37, 41), (38, 40), (43, 47), (44, 46)]])  # noqa: E731
        assert gap(lm1) < 0.5 * gap(lm0)
    elif name == "pucker":
        assert np.linalg.norm(lm1[48] - lm1[54]) < np.linalg.norm(lm0[48] - lm0[54]) - 0.03 * iod
    elif name == "mouth_open":
        assert lm1[8, 1] < lm0[8, 1] - 0.05 * iod  # the chin drops
        assert abs(lm1[27, 1] - lm0[27, 1]) < 1e-4  # the nose bridge does not move (0.1 mm; the chin: > 5 mm)
    # The face far from the mouth/brows/eyes stays put (nose tip).
    assert np.linalg.norm(lm1[30] - lm0[30]) < 0.03 * iod


def test_placement_scale_and_shift(pipe):
    base = pipe.pose(HeadState()).landmarks_ndc
    s = HeadState()
    s.placement.scale, s.placement.shift_x, s.placement.shift_y = 1.5, 0.3, -0.2
    moved = pipe.pose(s).landmarks_ndc
    # float32 affine map of NDC values <= 0.8: ~2 units (2e-7; measured 1.2e-7); 1e-5 = 100 units, while a
    # scale 1.5 vs 1.501 or a shift off by 1e-3 moves points by >= 5e-4.
    np.testing.assert_allclose(moved[:, 0] - 0.3, base[:, 0] * 1.5, atol=1e-5)
    np.testing.assert_allclose(moved[:, 1] + 0.2, base[:, 1] * 1.5, atol=1e-5)
    # Default framing: the face is centred with the documented height.
    span = base[:, 1].max() - base[:, 1].min()
    # the framing normalises to these values exactly up to float32 rounding (~1e-7); 1e-4 = 0.006 px at 128 px
    assert abs(span - 0.8) < 1e-4 and np.abs(base[:, :2].max(0) + base[:, :2].min(0)).max() < 1e-4


def test_dynamic_contour_rows():
    from caphuman.head.model import contour_rows
    from caphuman.controls.pose import rotation_from_ypr

    rows = [int(contour_rows(torch.tensor(rotation_from_ypr(y, 0, 0))[None].float())) for y in (0, 10, 39, 60, -1, -10, -39, -60)]
    assert rows == [0, 10, 39, 39, 40, 49, 78, 78]


def test_out_of_range_is_clamped_and_nan_rejected(pipe):
    s = state(yaw=500)
    with pytest.warns(UserWarning, match="yaw"):
        r = pipe.render(s, 32)
    assert r.hint.shape == (9, 32, 32)
    with pytest.raises(InputError, match="finite"):
        pipe.render(state(pitch=float("nan")), 32)
    with pytest.raises(InputError):
        pipe.render(HeadState(expression_controls={"grin": 1.0}), 32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pipe.render(state(yaw=90, pitch=-60, roll=60), 32)  # the range ends are accepted silently


def test_any_output_size(pipe):
    r = pipe.render(HeadState(), (48, 96))
    assert r.hint.shape == (9, 48, 96) and r.preview.shape == (48, 96, 3)
    cols = np.nonzero(r.mask.any(0))[0]
    assert abs((cols.min() + cols.max()) / 2 - 47.5) <= 1.5  # still centred (integer columns: +-1 px each side)
