"""The arrays of a head model, in FLAME's layout, and their ``.npz`` storage.

FLAME (converted from ``generic_model.pkl``) and the built-in head are stored the same way so that
one loader and one skinning path serve both. Units: metres. Axes of the template: x toward the
head's left (the image's right when the face looks at the camera), y up, z out of the face.

Arrays (``V`` vertices, ``F`` triangles, ``T`` UV coordinates, ``J = 5`` joints):

==========================  ==================  ==================================================
key                         shape / dtype       meaning
==========================  ==================  ==================================================
v_template                  (V, 3) float32      neutral template
f                           (F, 3) int64        triangles; (v1-v0) x (v2-v0) points outward
shapedirs                   (V, 3, S+E) float32 identity directions first, then expression
num_shape                   () int64            S: how many of ``shapedirs`` are identity
posedirs                    (V, 3, 36) float32  pose correctives for (R_j - I), joints 1..4
J_regressor                 (5, V) float32      joints = J_regressor @ vertices
kintree_table               (2, 5) int64        row 0: parents (-1 for the root), row 1: ids
weights                     (V, 5) float32      skinning weights, rows sum to 1
vt                          (T, 2) float32      UV coordinates in [0, 1], v up (OBJ convention)
ft                          (F, 3) int64        UV index of each triangle corner
albedo_mean                 (H, W, 3) float32   UV albedo map, RGB in [0, 1], row 0 = v 1
albedo_basis                (H, W, 3, K) f32    optional albedo PCA (K may be 0)
static_lmk_faces_idx        (51,) int64         landmarks 17..67 (iBUG order), triangle ids
static_lmk_bary_coords      (51, 3) float32     ... and barycentric coordinates
dynamic_lmk_faces_idx       (79, 17) int64      jaw contour (landmarks 0..16) per yaw row
dynamic_lmk_bary_coords     (79, 17, 3) float32 (rows 0..39: yaw 0..39 deg; 40..78: -1..-39 deg)
full_lmk_faces_idx          (68,) int64         all 68 landmarks, static (3-D landmarks)
full_lmk_bary_coords        (68, 3) float32
==========================  ==================  ==================================================

Metadata (0-d string arrays): ``name``, ``licence``, ``source``.
Joints: 0 global (root), 1 neck, 2 jaw, 3 left eye, 4 right eye.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from caphuman.errors import InputError

JOINT_NAMES = ("global", "neck", "jaw", "left_eye", "right_eye")
FLAME_PARENTS = (-1, 0, 1, 1, 1)


@dataclass
class HeadModelData:
    """All arrays of one head model (see the module docstring for shapes and units)."""

    v_template: np.ndarray
    f: np.ndarray
    shapedirs: np.ndarray
    num_shape: int
    posedirs: np.ndarray
    J_regressor: np.ndarray
    kintree_table: np.ndarray
    weights: np.ndarray
    vt: np.ndarray
    ft: np.ndarray
    albedo_mean: np.ndarray
    albedo_basis: np.ndarray
    static_lmk_faces_idx: np.ndarray
    static_lmk_bary_coords: np.ndarray
    dynamic_lmk_faces_idx: np.ndarray
    dynamic_lmk_bary_coords: np.ndarray
    full_lmk_faces_idx: np.ndarray
    full_lmk_bary_coords: np.ndarray
    name: str = "head"
    licence: str = ""
    source: str = ""

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    @property
    def num_expression(self) -> int:
        return int(self.shapedirs.shape[2] - self.num_shape)

    @property
    def num_albedo(self) -> int:
        return int(self.albedo_basis.shape[-1]) if self.albedo_basis.ndim == 4 else 0

    # ------------------------------------------------------------------ checks
    def validate(self) -> "HeadModelData":
        """Check shapes, index ranges and finiteness; raise InputError naming the bad array."""
        V = self.v_template.shape[0] if self.v_template.ndim == 2 else -1
        F = self.f.shape[0] if self.f.ndim == 2 else -1

        def need(cond: bool, what: str) -> None:
            if not cond:
                raise InputError(f"head model {self.name!r}: {what}")

        need(self.v_template.ndim == 2 and self.v_template.shape[1] == 3, "v_template must be (V, 3)")
        need(self.f.ndim == 2 and self.f.shape[1] == 3 and F > 0, "f must be (F, 3)")
        need(self.f.min() >= 0 and self.f.max() < V, "f indexes vertices out of range")
        need(self.shapedirs.ndim == 3 and self.shapedirs.shape[:2] == (V, 3), "shapedirs must be (V, 3, N)")
        need(0 <= self.num_shape <= self.shapedirs.shape[2], "num_shape exceeds shapedirs")
        need(self.posedirs.shape == (V, 3, 36), "posedirs must be (V, 3, 36)")
        need(self.J_regressor.shape == (5, V), "J_regressor must be (5, V)")
        need(self.kintree_table.shape == (2, 5), "kintree_table must be (2, 5)")
        need(self.weights.shape == (V, 5), "weights must be (V, 5)")
        need(self.vt.ndim == 2 and self.vt.shape[1] == 2, "vt must be (T, 2)")
        need(self.ft.shape == self.f.shape, "ft must match f")
        need(self.ft.min() >= 0 and self.ft.max() < self.vt.shape[0], "ft indexes vt out of range")
        need(self.albedo_mean.ndim == 3 and self.albedo_mean.shape[2] == 3, "albedo_mean must be (H, W, 3)")
        need(self.static_lmk_faces_idx.shape == (51,), "static_lmk_faces_idx must be (51,)")
        need(self.static_lmk_bary_coords.shape == (51, 3), "static_lmk_bary_coords must be (51, 3)")
        need(self.dynamic_lmk_faces_idx.shape == (79, 17), "dynamic_lmk_faces_idx must be (79, 17)")
        need(self.dynamic_lmk_bary_coords.shape == (79, 17, 3), "dynamic_lmk_bary_coords must be (79, 17, 3)")
        need(self.full_lmk_faces_idx.shape == (68,), "full_lmk_faces_idx must be (68,)")
        need(self.full_lmk_bary_coords.shape == (68, 3), "full_lmk_bary_coords must be (68, 3)")
        for name in ("static_lmk_faces_idx", "dynamic_lmk_faces_idx", "full_lmk_faces_idx"):
            arr = getattr(self, name)
            need(arr.min() >= 0 and arr.max() < F, f"{name} indexes faces out of range")
        for fld in fields(self):
            arr = getattr(self, fld.name)
            if isinstance(arr, np.ndarray) and arr.dtype.kind == "f":
                need(bool(np.isfinite(arr).all()), f"{fld.name} contains NaN or infinity")
        # the framing divides by the template landmarks' height: a degenerate (e.g. zeroed) template
        # is a damaged file, not a head
        tri = self.v_template[self.f[self.full_lmk_faces_idx]]  # (68, 3 corners, 3)
        lmk_y = np.einsum("lc,lc->l", self.full_lmk_bary_coords, tri[:, :, 1])
        need(float(lmk_y.max() - lmk_y.min()) > 0, "the template's landmarks have no vertical extent "
             "(a degenerate or damaged model)")
        return self

    # ------------------------------------------------------------------ storage
    def save_npz(self, path: str | os.PathLike, compressed: bool = True) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {}
        for fld in fields(self):
            value = getattr(self, fld.name)
            arrays[fld.name] = np.asarray(value) if not isinstance(value, str) else np.array(value)
        tmp = path.with_name(path.name + ".tmp.npz")
        (np.savez_compressed if compressed else np.savez)(tmp, **arrays)
        os.replace(tmp, path)
        return path

    @classmethod
    def load_npz(cls, path: str | os.PathLike) -> "HeadModelData":
        """Load a head model ``.npz`` (never with pickles allowed)."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except ValueError as exc:  # object arrays need pickles: refuse
            raise InputError(f"{path}: not a plain-array head model file ({exc})") from None
        except (OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError, MemoryError) as exc:
            raise InputError(f"{path}: cannot read head model ({type(exc).__name__}: {str(exc)[:120]})") from None
        missing = [f.name for f in fields(cls) if f.name not in data and f.name not in ("name", "licence", "source")]
        if missing:
            raise InputError(f"{path}: head model file lacks {', '.join(missing)}")
        kwargs = {}
        for fld in fields(cls):
            if fld.name not in data:
                continue
            v = data[fld.name]
            if fld.name in ("name", "licence", "source"):
                kwargs[fld.name] = str(v)
            elif fld.name == "num_shape":
                if v.shape != () or v.dtype.kind not in "iu":
                    raise InputError(f"{path}: num_shape is not an integer")
                kwargs[fld.name] = int(v)
            elif v.dtype.kind in "iu":
                kwargs[fld.name] = v.astype(np.int64)
            elif v.dtype.kind in "fb":
                kwargs[fld.name] = v.astype(np.float32)
            else:
                raise InputError(f"{path}: {fld.name} is not a numeric array ({v.dtype})")
        try:
            return cls(**kwargs).validate()
        except (IndexError, ValueError, TypeError) as exc:  # shapes too broken for the checks themselves
            if isinstance(exc, InputError):
                raise
            raise InputError(f"{path}: not a consistent head model ({str(exc)[:120]})") from None
