"""Skinning against an independent NumPy/SciPy implementation (random correctives and poses)."""

import dataclasses

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from caphuman.head.lbs import rodrigues
from caphuman.head.model import HeadModel, HeadParams


def reference_lbs(data, coeffs, pose):
    """Textbook LBS in float64: blendshapes, (R - I) correctives, kinematic chain, skinning."""
    v = data.v_template.astype(np.float64) + data.shapedirs.astype(np.float64) @ coeffs
    J = data.J_regressor.astype(np.float64) @ v
    R = Rotation.from_rotvec(pose.reshape(-1, 3)).as_matrix()
    feat = np.concatenate([(R[j] - np.eye(3)).ravel() for j in range(1, 5)])
    v = v + data.posedirs.astype(np.float64) @ feat
    parents = data.kintree_table[0]
    G = []
    for j in range(5):
        local = np.eye(4)
        local[:3, :3] = R[j]
        local[:3, 3] = J[j] - (J[parents[j]] if j else 0)
        G.append(local if j == 0 else G[parents[j]] @ local)
    A = []
    for j in range(5):
        g = G[j].copy()
        g[:3, 3] -= g[:3, :3] @ J[j]
        A.append(g)
    A = np.stack(A)
    T = np.einsum("vj,jab->vab", data.weights.astype(np.float64), A)
    vh = np.concatenate([v, np.ones((len(v), 1))], 1)
    return np.einsum("vab,vb->va", T, vh)[:, :3]


def test_lbs_matches_reference(synthetic_head):
    rng = np.random.default_rng(3)
    data = dataclasses.replace(synthetic_head, posedirs=rng.normal(0, 1e-3, synthetic_head.posedirs.shape).astype(np.float32))
    model = HeadModel(data)
    assert model.has_pose_correctives
    S, E = data.num_shape, data.num_expression
    coeffs = rng.normal(size=S + E)
    pose = rng.uniform(-0.4, 0.4, 15)
    out = model(HeadParams(
        shape=torch.tensor(coeffs[None, :S], dtype=torch.float32),
        expression=torch.tensor(coeffs[None, S:], dtype=torch.float32),
        global_pose=torch.tensor(pose[None, 0:3], dtype=torch.float32),
        neck_pose=torch.tensor(pose[None, 3:6], dtype=torch.float32),
        jaw_pose=torch.tensor(pose[None, 6:9], dtype=torch.float32),
        eye_pose=torch.tensor(pose[None, 9:15], dtype=torch.float32),
    ))
    expected = reference_lbs(data, coeffs, pose)
    # float32 model vs float64 reference: blend sums of 22 shape/expression + 36 pose-corrective terms
    # (coefficients ~N(0, 1)) and a 3-level kinematic chain round to a few float32 units of the vertex
    # magnitude (|v| <= 0.12: 1 unit = 1.4e-8; measured ~3 units, 4.7e-8). 2e-6 is ~140 units; a transposed
    # rotation, a wrong joint order or a dropped corrective moves vertices by >= 1e-4.
    np.testing.assert_allclose(out.vertices[0].numpy(), expected, atol=2e-6)
    # Landmarks are barycentric combinations of the posed triangles.
    tri = data.f[data.full_lmk_faces_idx]
    lm3 = np.einsum("lk,lkc->lc", data.full_lmk_bary_coords, expected[tri])
    np.testing.assert_allclose(out.landmarks3d[0].numpy(), lm3, atol=2e-6)  # convex combinations: same bound


def test_batched_forward_equals_single(synthetic_head):
    model = HeadModel(synthetic_head)
    rng = np.random.default_rng(0)
    B = 3
    p = HeadParams(
        shape=torch.tensor(rng.normal(size=(B, 4)), dtype=torch.float32),
        expression=torch.tensor(rng.normal(size=(B, 20)), dtype=torch.float32),  # longer: truncated
        global_pose=torch.tensor(rng.uniform(-0.5, 0.5, (B, 3)), dtype=torch.float32),
        jaw_pose=torch.tensor(rng.uniform(0, 0.3, (B, 3)), dtype=torch.float32),
    )
    batched = model(p).vertices
    for b in range(B):
        one = model(HeadParams(*(t[b:b + 1] for t in (p.shape, p.expression, p.global_pose, p.jaw_pose)))).vertices
        # torch's float32 defaults (atol 1e-5 + rtol 1.3e-6: ~600 float32 units of |v| <= 0.15) cover
        # batch-shape rounding (measured < 1 unit); another element's parameters move vertices >= 1e-3.
        torch.testing.assert_close(one[0], batched[b])


def test_rodrigues_matches_scipy():
    v = torch.tensor(np.random.default_rng(1).normal(size=(10, 3)), dtype=torch.float64)
    # float64; the only deviation is rodrigues' deliberate eps = 1e-8 added before the norm, which moves R by
    # <= |dR/dv| x 1e-8 x sqrt(3) ~ 2e-8 (measured 2.0e-8): 1e-7 allows it, a sign or axis-order error is O(1).
    np.testing.assert_allclose(rodrigues(v).numpy(), Rotation.from_rotvec(v.numpy()).as_matrix(), atol=1e-7)
    # float32 zero vector: axis = 0 so R = I exactly (measured 0); 1e-6 = 8 float32 units of |R| = 1
    np.testing.assert_allclose(rodrigues(torch.zeros(1, 3)).numpy()[0], np.eye(3), atol=1e-6)
