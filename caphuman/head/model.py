"""The head model: FLAME-layout arrays + linear blend skinning + 68 landmarks, in torch.

:class:`HeadModel` takes plain parameter tensors (:class:`HeadParams`) and returns posed vertices,
joints and landmarks in the model's metric space (x: head's left / image right, y up, z out of
the face). Camera placement is not applied here (see :mod:`caphuman.render.camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from caphuman.head.lbs import lbs, rodrigues
from caphuman.head.model_data import HeadModelData


@dataclass
class HeadParams:
    """Model parameters, batch B. Rotations are axis-angle in radians.

    shape (B, S), expression (B, E), global_pose (B, 3), neck_pose (B, 3), jaw_pose (B, 3),
    eye_pose (B, 6) [left eye, right eye].
    """

    shape: torch.Tensor
    expression: torch.Tensor
    global_pose: torch.Tensor
    jaw_pose: torch.Tensor
    neck_pose: torch.Tensor | None = None
    eye_pose: torch.Tensor | None = None


@dataclass
class HeadOutput:
    """vertices (B, V, 3), joints (B, 5, 3), landmarks (B, 68, 3) with the yaw-dependent jaw
    contour (what 2-D fitting and drawing use), landmarks3d (B, 68, 3) static embedding."""

    vertices: torch.Tensor
    joints: torch.Tensor
    landmarks: torch.Tensor
    landmarks3d: torch.Tensor


def barycentric_points(vertices: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, bary: torch.Tensor) -> torch.Tensor:
    """Points on triangles: vertices (B, V, 3), faces (F, 3), face_idx (B, L), bary (B, L, 3) -> (B, L, 3)."""
    tri = faces[face_idx]  # (B, L, 3)
    b = torch.arange(vertices.shape[0], device=vertices.device)[:, None, None]
    corners = vertices[b, tri]  # (B, L, 3, 3)
    return (corners * bary[..., None]).sum(dim=2)


def contour_rows(rel_rot: torch.Tensor) -> torch.Tensor:
    """Row of the dynamic contour table for each (B, 3, 3) neck-chain rotation (reference §4.3).

    angle = atan2(-R[2,0], sqrt(R[0,0]^2 + R[1,0]^2)) in degrees, clamped to <= 39 and rounded;
    angles >= 0 index rows 0..39, negative ones row 39 - angle (below -39: row 78).
    """
    sy = torch.sqrt(rel_rot[:, 0, 0] ** 2 + rel_rot[:, 1, 0] ** 2)
    angle = torch.round(torch.clamp(torch.atan2(-rel_rot[:, 2, 0], sy) * 180.0 / math.pi, max=39)).long()
    neg = angle < 0
    return torch.where(neg, torch.where(angle < -39, torch.full_like(angle, 78), 39 - angle), angle)


class HeadModel(torch.nn.Module):
    """FLAME-style head model built from :class:`HeadModelData` (FLAME or the built-in head)."""

    def __init__(self, data: HeadModelData):
        super().__init__()
        self.data = data
        self.num_shape = data.num_shape
        self.num_expression = data.num_expression
        f32 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)  # noqa: E731
        i64 = lambda a: torch.as_tensor(np.ascontiguousarray(a), dtype=torch.int64)  # noqa: E731
        self.register_buffer("v_template", f32(data.v_template), persistent=False)
        self.register_buffer("shapedirs", f32(data.shapedirs), persistent=False)
        self.register_buffer("posedirs", f32(data.posedirs), persistent=False)
        self.has_pose_correctives = bool(np.any(data.posedirs))
        self.register_buffer("J_regressor", f32(data.J_regressor), persistent=False)
        self.register_buffer("weights", f32(data.weights), persistent=False)
        self.register_buffer("parents", i64(data.kintree_table[0]), persistent=False)
        self.register_buffer("faces", i64(data.f), persistent=False)
        self.register_buffer("static_faces", i64(data.static_lmk_faces_idx), persistent=False)
        self.register_buffer("static_bary", f32(data.static_lmk_bary_coords), persistent=False)
        self.register_buffer("dynamic_faces", i64(data.dynamic_lmk_faces_idx), persistent=False)
        self.register_buffer("dynamic_bary", f32(data.dynamic_lmk_bary_coords), persistent=False)
        self.register_buffer("full_faces", i64(data.full_lmk_faces_idx), persistent=False)
        self.register_buffer("full_bary", f32(data.full_lmk_bary_coords), persistent=False)

    def coefficients(self, shape: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """Pad/truncate shape and expression to the model's counts and concatenate (B, S+E)."""
        def fit(x: torch.Tensor, n: int) -> torch.Tensor:
            x = x.to(torch.float32)
            if x.shape[1] >= n:
                return x[:, :n]
            return torch.nn.functional.pad(x, (0, n - x.shape[1]))
        return torch.cat([fit(shape, self.num_shape), fit(expression, self.num_expression)], dim=1)

    def forward(self, params: HeadParams) -> HeadOutput:
        B = params.global_pose.shape[0]
        zeros3 = params.global_pose.new_zeros(B, 3)
        neck = params.neck_pose if params.neck_pose is not None else zeros3
        eyes = params.eye_pose if params.eye_pose is not None else params.global_pose.new_zeros(B, 6)
        full_pose = torch.cat([params.global_pose, neck, params.jaw_pose, eyes], dim=1).float()
        coeffs = self.coefficients(params.shape, params.expression)
        posedirs = self.posedirs if self.has_pose_correctives else None
        verts, joints, rot_mats = lbs(coeffs, full_pose, self.v_template, self.shapedirs, posedirs,
                                      self.J_regressor, self.parents, self.weights)
        # Landmarks: 17 yaw-dependent contour points + 51 static points (iBUG order).
        rel = torch.matmul(rot_mats[:, 0], rot_mats[:, 1])  # neck chain: neck, then root
        rows = contour_rows(rel)
        dyn_faces = self.dynamic_faces[rows]
        dyn_bary = self.dynamic_bary[rows]
        faces_idx = torch.cat([dyn_faces, self.static_faces[None].expand(B, -1)], dim=1)
        bary = torch.cat([dyn_bary, self.static_bary[None].expand(B, -1, -1)], dim=1)
        landmarks = barycentric_points(verts, self.faces, faces_idx, bary)
        landmarks3d = barycentric_points(verts, self.faces, self.full_faces[None].expand(B, -1),
                                         self.full_bary[None].expand(B, -1, -1))
        return HeadOutput(vertices=verts, joints=joints, landmarks=landmarks, landmarks3d=landmarks3d)

    @torch.no_grad()
    def template_landmarks(self) -> np.ndarray:
        """The neutral template's 68 static landmarks (68, 3), metres."""
        v = self.v_template[None]
        pts = barycentric_points(v, self.faces, self.full_faces[None], self.full_bary[None])
        return pts[0].numpy().astype(np.float64)

    def landmark_basis(self) -> np.ndarray:
        """d(landmarks3d)/d(expression): (68, 3, E), linear at zero pose (used by expression fits)."""
        dirs = self.data.shapedirs[:, :, self.num_shape:].astype(np.float64)
        tri = self.data.f[self.data.full_lmk_faces_idx]  # (68, 3)
        return np.einsum("lk,lkce->lce", self.data.full_lmk_bary_coords.astype(np.float64), dirs[tri])


__all__ = ["HeadModel", "HeadOutput", "HeadParams", "barycentric_points", "contour_rows", "rodrigues"]
