"""The dense fit against an independent computation: points produced by the renderer's own head
forward (torch LBS, :class:`caphuman.head.model.HeadModel`) at a known state are fitted back.
No MediaPipe here: the points are exact, so what is tested is the fitter and the embedding."""

from __future__ import annotations

import numpy as np
import pytest

from caphuman.controls.state import HeadState, Pose


@pytest.fixture(scope="module")
def fitter(builtin_pipeline):
    from caphuman.face.analysis import target_for_pipeline

    return target_for_pipeline(builtin_pipeline).dense_fitter()


def observed(pipeline, fitter, state: HeadState) -> np.ndarray:
    """Frame NDC of the 478 embedded points, posed by the renderer (HeadPreviewPipeline.pose)."""
    posed = pipeline.pose(state)
    return fitter.embedding.points(posed.ndc, pipeline.data.f)[:, :2]


def test_points_equal_the_model_forward(builtin_pipeline, fitter):
    """The fitter's own numpy forward (subset of vertices, joints from the regressor's linear part)
    equals the torch head model on the full mesh. Both are float32-data computations of points
    ~0.1 m from the origin scaled by ~6 NDC/m: float32 rounding of the torch side is ~1e-7 x 0.6
    per operation over ~10 operations, so 1e-5 NDC; a wrong joint, sign or skinning weight moves
    points by > 1e-3."""
    state = HeadState(shape=[0.8, -0.5, 0.3], expression=[0.4, -0.2], expression_controls={"smile": 0.5},
                      pose=Pose(yaw=25, pitch=-10, roll=5, jaw=12, eye_yaw=8, eye_pitch=-4))
    state.placement.scale, state.placement.shift_x, state.placement.shift_y = 1.2, 0.1, -0.05
    q = np.zeros(fitter.n)
    q[0] = np.log(1.2)
    q[1:4] = (25, -10, 5)
    q[4:6] = (0.1, -0.05)
    q[fitter.i_shape:fitter.i_shape + 3] = (0.8, -0.5, 0.3)
    q[fitter.i_ctrl] = 0.5  # smile is the first fitted control
    q[fitter.i_expr:fitter.i_expr + 2] = (0.4, -0.2)
    q[fitter.i_jaw:] = (12, 8, -4)
    # the fitter's placement is the renderer's: shift is the NDC position of the pivot
    ndc = fitter.points(q)[0]
    ref = observed(builtin_pipeline, fitter, state)
    assert np.abs(ndc - ref).max() < 1e-5


def test_jacobian_matches_differences(fitter):
    """The analytic columns (shape / expression) and the difference columns agree with central
    differences at jaw = eyes = 0 (where the neglected hinge shift is exactly 0). Step 1e-4 in
    std units on a model quadratic at most through the rotation: truncation ~1e-8 relative."""
    rng = np.random.default_rng(1)
    q = rng.normal(0, 0.3, fitter.n)
    q[0], q[1:4] = 0.0, (20.0, -8.0, 4.0)
    q[fitter.i_jaw:] = 0.0
    J = fitter.jacobian(q)
    for i in range(fitter.n):
        h = 1e-4
        qp, qm = q.copy(), q.copy()
        qp[i] += h
        qm[i] -= h
        num = (fitter.points(qp)[0] - fitter.points(qm)[0]) / (2 * h)
        scale = max(np.abs(num).max(), 1e-9)
        # forward-difference columns (rigid, jaw, eyes): error ~ step x curvature, 1e-3 relative
        assert np.abs(J[:, :, i] - num).max() / scale < 2e-3, i


@pytest.mark.parametrize("pose", [dict(yaw=0), dict(yaw=35, pitch=10, roll=-6), dict(yaw=-50, pitch=-15, roll=12)])
def test_recovers_a_known_pose(builtin_pipeline, fitter, pose):
    truth = HeadState(pose=Pose(**pose))
    truth.placement.scale, truth.placement.shift_x = 0.9, -0.1
    res = fitter.fit(observed(builtin_pipeline, fitter, truth))
    p = res.state.pose
    # exact points: only the priors bias the answer (a 0.002 weight per 60 degrees against ~400
    # exact points): a few hundredths of a degree; 0.3 degree catches a wrong axis or sign.
    for k, v in pose.items():
        assert getattr(p, k) == pytest.approx(v, abs=0.3), k
    assert res.state.placement.scale == pytest.approx(0.9, rel=0.01)
    assert res.state.placement.shift_x == pytest.approx(-0.1, abs=0.01)
    assert res.reprojection < 0.002


def test_recovers_expression_jaw_and_gaze(builtin_pipeline, fitter):
    truth = HeadState(expression_controls={"smile": 0.6}, pose=Pose(yaw=10, jaw=15, eye_yaw=12, eye_pitch=-8))
    res = fitter.fit(observed(builtin_pipeline, fitter, truth))
    p, c = res.state.pose, res.state.expression_controls
    assert p.jaw == pytest.approx(15, abs=1.5)
    assert p.eye_yaw == pytest.approx(12, abs=1.5) and p.eye_pitch == pytest.approx(-8, abs=1.5)
    # the smile can trade with raw expression coefficients; its slider must carry most of it
    assert c.get("smile", 0) == pytest.approx(0.6, abs=0.15)


def test_eyes_closed_and_a_wink(builtin_pipeline, fitter):
    shut = fitter.fit(observed(builtin_pipeline, fitter, HeadState(expression_controls={"eyes_closed": 1.0})))
    assert shut.state.expression_controls.get("eyes_closed", 0) > 0.6
    wink = fitter.fit(observed(builtin_pipeline, fitter, HeadState(expression_controls={"wink_left": 1.0})))
    c = wink.state.expression_controls
    assert c.get("wink_left", 0) > 0.6 and c.get("wink_right", 0) < 0.2 and c.get("eyes_closed", 0) < 0.2


def test_neutral_fits_neutral(builtin_pipeline, fitter):
    res = fitter.fit(observed(builtin_pipeline, fitter, HeadState()))
    s = res.state
    assert all(abs(v) < 0.05 for v in s.expression_controls.values())
    assert max(abs(v) for v in s.expression + s.shape) < 0.1
    assert abs(s.pose.jaw) < 0.5 and abs(s.pose.eye_yaw) < 0.5


def test_outlying_points_count_little(builtin_pipeline, fitter):
    """10 % of the points thrown 0.2 NDC (a quarter of the face) away: the soft-L1 loss keeps the
    pose within a degree (plain least squares is pulled several degrees)."""
    truth = HeadState(pose=Pose(yaw=30, pitch=5, roll=3))
    obs = observed(builtin_pipeline, fitter, truth)
    rng = np.random.default_rng(0)
    bad = rng.choice(np.flatnonzero(fitter.embedding.weight > 0.5), 45, replace=False)
    obs[bad] += rng.normal(0, 0.2, (len(bad), 2))
    p = fitter.fit(obs).state.pose
    assert p.yaw == pytest.approx(30, abs=1.0) and p.pitch == pytest.approx(5, abs=1.0) and p.roll == pytest.approx(3, abs=1.0)


def test_mirrored_points_give_negated_yaw_and_roll(builtin_pipeline, fitter):
    """Mirror the observed points (x -> -x, each point moved to its partner's index): the fit gives
    the negated yaw, roll and eye_yaw; pitch unchanged."""
    obs = observed(builtin_pipeline, fitter, HeadState(pose=Pose(yaw=28, pitch=-7, roll=9, eye_yaw=6)))
    mirror = fitter.embedding.mirror
    known = mirror >= 0
    flipped = np.full_like(obs, np.nan)
    flipped[mirror[known]] = obs[known] * np.array([-1.0, 1.0])
    a = fitter.fit(obs).state.pose
    b = fitter.fit(flipped).state.pose
    assert b.yaw == pytest.approx(-a.yaw, abs=0.3) and b.roll == pytest.approx(-a.roll, abs=0.3)
    assert b.pitch == pytest.approx(a.pitch, abs=0.3) and b.eye_yaw == pytest.approx(-a.eye_yaw, abs=0.5)


def test_nan_points_are_ignored(builtin_pipeline, fitter):
    obs = observed(builtin_pipeline, fitter, HeadState(pose=Pose(yaw=-20)))
    obs[:200] = np.nan
    assert fitter.fit(obs).state.pose.yaw == pytest.approx(-20, abs=0.5)


def test_flame_layout_model_fits_the_same_way():
    """A FLAME-layout model (5023 vertices, 300 shape / 100 expression directions; the synthetic
    one of the test fixtures): its transferred embedding and the same fitter recover a pose."""
    from flame_fixtures import flame_layout_head

    from caphuman.face.analysis import target_for_pipeline
    from caphuman.preview import HeadPreviewPipeline

    pipe = HeadPreviewPipeline(flame_layout_head())
    fz = target_for_pipeline(pipe).dense_fitter()
    assert fz.ns == 40 and fz.ne == 20  # MAX_SHAPE / MAX_EXPRESSION of FLAME's 300 / 100
    truth = HeadState(pose=Pose(yaw=-30, pitch=12, roll=-5))
    p = fz.fit(observed(pipe, fz, truth)).state.pose
    assert p.yaw == pytest.approx(-30, abs=0.5) and p.pitch == pytest.approx(12, abs=0.5)
    assert p.roll == pytest.approx(-5, abs=0.5)
