"""A synthetic model in FLAME 2023 Open's layout, built at test time (no licensed file needed):
5023 vertices, 9976 faces, 300 shape + 100 expression directions, 36 pose correctives, 5 joints,
``supr_expression_metadata``, chumpy-style arrays; zipped like ``FLAME2023Open.zip``."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from caphuman.head.model_data import HeadModelData

V, F, N_SHAPE, N_EXPR = 5023, 9976, 300, 100


def flame_layout_head() -> HeadModelData:
    """The synthetic sphere head, padded to FLAME's sizes: the extra vertices form tiny triangles
    hidden inside the head; the extra directions are zero."""
    from caphuman.testing.synthetic_head import build_synthetic_head

    h = build_synthetic_head(50, 70)
    v0, f0 = len(h.v_template), len(h.f)
    n_pad = V - v0
    tri = np.array([[0, 0, 0], [0.001, 0, 0], [0, 0.001, 0]], np.float32)
    pad_v = np.tile(tri, (n_pad // 3 + 1, 1))[:n_pad]
    pad_tris = (v0 + np.arange(n_pad // 3 * 3)).reshape(-1, 3)
    pad_f = np.tile(pad_tris, (int(np.ceil((F - f0) / len(pad_tris))), 1))[: F - f0]
    sd = np.zeros((V, 3, N_SHAPE + N_EXPR), np.float32)
    sd[:v0, :, : h.num_shape] = h.shapedirs[:, :, : h.num_shape]
    n_e = h.shapedirs.shape[2] - h.num_shape
    sd[:v0, :, N_SHAPE: N_SHAPE + n_e] = h.shapedirs[:, :, h.num_shape:]
    weights = np.zeros((V, 5), np.float32)
    weights[:v0] = h.weights
    weights[v0:, 1] = 1.0
    J = np.zeros((5, V), np.float32)
    J[:, :v0] = h.J_regressor
    pose = np.zeros((V, 3, 36), np.float32)
    pose[:v0] = np.random.default_rng(0).normal(0, 1e-4, (v0, 3, 36))  # small, non-zero correctives
    vt = np.concatenate([h.vt, np.full((n_pad, 2), 0.5, np.float32)])
    return HeadModelData(
        v_template=np.concatenate([h.v_template, pad_v]), f=np.concatenate([h.f, pad_f]), shapedirs=sd,
        num_shape=N_SHAPE, posedirs=pose, J_regressor=J, kintree_table=h.kintree_table, weights=weights,
        vt=vt, ft=np.concatenate([h.ft, pad_f]), albedo_mean=h.albedo_mean, albedo_basis=h.albedo_basis,
        static_lmk_faces_idx=h.static_lmk_faces_idx, static_lmk_bary_coords=h.static_lmk_bary_coords,
        dynamic_lmk_faces_idx=h.dynamic_lmk_faces_idx, dynamic_lmk_bary_coords=h.dynamic_lmk_bary_coords,
        full_lmk_faces_idx=h.full_lmk_faces_idx, full_lmk_bary_coords=h.full_lmk_bary_coords,
        name="synthetic FLAME layout", licence="test", source="tests/flame_fixtures.py",
    ).validate()


def flame2023_pickle_bytes(head: HeadModelData, extra: dict | None = None) -> bytes:
    """FLAME-2023-style pickle: chumpy Ch arrays (a fake chumpy module exists only while pickling),
    sparse J_regressor, uint32 faces, the 2023 extra key; posedirs in FLAME's (V*3, 36) layout."""
    from test_head_files import _FakeChumpyModule

    with _FakeChumpyModule() as Ch:
        model = {
            "v_template": Ch(head.v_template.astype(np.float64)),
            "f": head.f.astype(np.uint32),
            "shapedirs": Ch(head.shapedirs.astype(np.float64)),
            "posedirs": Ch(head.posedirs.reshape(V * 3, 36).astype(np.float64)),
            "J_regressor": sp.csc_matrix(head.J_regressor.astype(np.float64)),
            "kintree_table": np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64),
            "weights": Ch(head.weights.astype(np.float64)),
            "bs_style": "lbs", "bs_type": "lrotmin",
            "supr_expression_metadata": {"version": "2023", "num_expression": np.int64(N_EXPR),
                                         "names": ["expr_%d" % i for i in range(4)]},
            **(extra or {}),
        }
        return pickle.dumps(model, protocol=2)


def write_deca_data(folder: Path, head: HeadModelData) -> None:
    """DECA's landmark_embedding.npy (torch tensors inside, as the real one) and head_template.obj."""
    folder.mkdir(parents=True, exist_ok=True)
    lmk = {
        "static_lmk_faces_idx": head.static_lmk_faces_idx,
        "static_lmk_bary_coords": head.static_lmk_bary_coords.astype(np.float64),
        "dynamic_lmk_faces_idx": torch.from_numpy(head.dynamic_lmk_faces_idx),
        "dynamic_lmk_bary_coords": torch.from_numpy(head.dynamic_lmk_bary_coords),
        "full_lmk_faces_idx": head.full_lmk_faces_idx[None],
        "full_lmk_bary_coords": head.full_lmk_bary_coords[None],
    }
    np.save(folder / "landmark_embedding.npy", lmk, allow_pickle=True)
    lines = [f"v {x} {y} {z}" for x, y, z in head.v_template]
    lines += [f"vt {u} {v}" for u, v in head.vt]
    lines += [f"f {a+1}/{ta+1} {b+1}/{tb+1} {c+1}/{tc+1}" for (a, b, c), (ta, tb, tc) in zip(head.f, head.ft)]
    (folder / "head_template.obj").write_text("\n".join(lines) + "\n")


def flame2023_zip(path: Path, pickle_bytes: bytes, members: dict[str, bytes] | None = None) -> Path:
    """``FLAME2023Open.zip``-style archive: the model pickle + a readme (+ ``members``)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("flame2023_Open.pkl", pickle_bytes)
        zf.writestr("Readme.pdf", b"%PDF-1.4 FLAME2023_Open is available under a Creative Commons Attribution "
                                  b"4.0 International License")
        for name, data in (members or {}).items():
            zf.writestr(name, data)
    return path


__all__ = ["flame_layout_head", "flame2023_pickle_bytes", "write_deca_data", "flame2023_zip", "io"]
