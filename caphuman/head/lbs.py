"""Linear blend skinning (torch, float32, batched): plain tensors in, plain tensors out.

Conventions follow FLAME/SMPL: axis-angle rotations in radians, joints ordered so a parent comes
before its children, pose correctives driven by (R_j - I) of every non-root joint.
"""

from __future__ import annotations

import torch


def rodrigues(rot_vecs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Axis-angle (N, 3) -> rotation matrices (N, 3, 3). ``eps`` is added before the norm."""
    angle = torch.norm(rot_vecs + eps, dim=1, keepdim=True)
    axis = rot_vecs / angle
    cos = torch.cos(angle)[:, :, None]
    sin = torch.sin(angle)[:, :, None]
    x, y, z = axis[:, 0], axis[:, 1], axis[:, 2]
    zeros = torch.zeros_like(x)
    K = torch.stack([zeros, -z, y, z, zeros, -x, -y, x, zeros], dim=1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return eye + sin * K + (1.0 - cos) * torch.bmm(K, K)


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Coefficients (B, K) x directions (V, 3, K) -> offsets (B, V, 3)."""
    V, C, K = dirs.shape
    return torch.matmul(dirs.reshape(V * C, K), coeffs.T).T.reshape(-1, V, C)


def vertices_to_joints(J_regressor: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """(J, V) x (B, V, 3) -> joints (B, J, 3)."""
    return torch.matmul(J_regressor, vertices)


def rigid_chain(rot_mats: torch.Tensor, joints: torch.Tensor, parents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Compose joint rotations along the tree.

    rot_mats (B, J, 3, 3), rest joints (B, J, 3), parents (J,) with parents[0] = -1.
    Returns posed joints (B, J, 3) and the skinning transforms (B, J, 4, 4) that map rest-pose
    points to posed points for each joint.
    """
    B, J = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.zeros(B, J, 4, 4, dtype=joints.dtype, device=joints.device)
    local[..., :3, :3] = rot_mats
    local[..., :3, 3] = rel
    local[..., 3, 3] = 1.0
    chain = [local[:, 0]]
    for j in range(1, J):
        chain.append(torch.matmul(chain[int(parents[j])], local[:, j]))
    world = torch.stack(chain, dim=1)
    posed_joints = world[..., :3, 3]
    # Remove the rest-pose joint location so the transform applies to rest-pose points.
    offset = torch.matmul(world[..., :3, :3], joints[..., None])[..., 0]
    skin = world.clone()
    skin[..., :3, 3] = world[..., :3, 3] - offset
    return posed_joints, skin


def lbs(
    coeffs: torch.Tensor,
    full_pose: torch.Tensor,
    v_template: torch.Tensor,
    shapedirs: torch.Tensor,
    posedirs: torch.Tensor | None,
    J_regressor: torch.Tensor,
    parents: torch.Tensor,
    weights: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Shape/expression blendshapes, pose correctives and skinning.

    coeffs (B, K) against shapedirs (V, 3, K); full_pose (B, J*3) axis-angle per joint;
    posedirs (V, 3, 9*(J-1)) or None when
    the model has no pose correctives. Returns (posed vertices (B, V, 3), posed joints (B, J, 3),
    rotation matrices (B, J, 3, 3)).
    """
    B = coeffs.shape[0]
    J = J_regressor.shape[0]
    v_shaped = v_template[None] + blend_shapes(coeffs, shapedirs)
    joints = vertices_to_joints(J_regressor, v_shaped)
    rot_mats = rodrigues(full_pose.reshape(-1, 3)).view(B, J, 3, 3)
    eye = torch.eye(3, dtype=coeffs.dtype, device=coeffs.device)
    pose_feature = (rot_mats[:, 1:] - eye).reshape(B, -1)
    v_posed = v_shaped if posedirs is None else v_shaped + blend_shapes(pose_feature, posedirs)
    posed_joints, skin = rigid_chain(rot_mats, joints, parents)
    T = torch.matmul(weights, skin.reshape(B, J, 16)).reshape(B, -1, 4, 4)
    verts = (T[..., :3, :3] * v_posed[..., None, :]).sum(-1) + T[..., :3, 3]
    return verts, posed_joints, rot_mats
