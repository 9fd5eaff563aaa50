"""What the browser needs to pose and draw the head itself (the studio's live head).

:func:`head_payload` packs, for one head model and one *base* state (shape, albedo and the
expression coefficients no slider drives), everything the page's WebGL code needs to apply the
sliders every animation frame without a server call:

* ``base`` (V, 3): template + shape + fixed expression offsets, metres (model space);
* ``blend`` (K, V, 3): one direction per slider-driven blendshape (the semantic expression sliders,
  solved once into coefficients by :class:`~caphuman.controls.expressions.ExpressionSolver`, then
  the raw coefficients the "Advanced" sliders drive), with ``blend_joints`` (K, J, 3) their effect
  on the regressed joints (joints are linear in the vertices);
* skinning: ``joints`` (J, 3) of the base mesh, ``parents``, ``weights`` (V, J) and, where the model
  has them, pose correctives ``posedirs`` (V, 3, 9 (J - 1));
* ``faces``, per-vertex albedo colours, the framing (pivot, NDC per metre) and the SH constants
  (reference §4.5) so the shader matches :mod:`caphuman.render.maps`;
* optionally the photo texture (:func:`photo_projection`): per-vertex photo coordinates, how well
  the photo saw each vertex, the photo's mean skin tone and the frame as a JPEG.

Arrays are little-endian float32 / uint32 in base64. No Gradio here (the page lives in ``demo/``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import numpy as np

from caphuman.controls.state import EXPRESSION_CONTROLS, MOUTH_OPEN_JAW_DEGREES, HeadState
from caphuman.render.camera import FACE_HEIGHT_NDC
from caphuman.render.shading import SH_CONSTANTS
from caphuman.studio.controls import NUM_RAW_EXPRESSION

#: Semantic sliders that are expression blendshapes (``mouth_open`` drives the jaw joint instead).
SEMANTIC = [n for n in EXPRESSION_CONTROLS if n != "mouth_open"]


def _b64(a: np.ndarray, dtype) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype=np.dtype(dtype).newbyteorder("<")).tobytes()).decode()


@dataclass
class PhotoProjection:
    """The reference photo seen from the fitted head: uv (V, 2) in [0, 1] (u right, v down),
    visibility (V,) in [0, 1], skin (3,) mean RGB in [0, 1] of the visible face."""

    uv: np.ndarray
    visibility: np.ndarray
    skin: np.ndarray


def photo_projection(pipeline, fitted: HeadState, frame: np.ndarray) -> PhotoProjection:
    """Project the frame photo onto the fitted mesh: each vertex gets the photo coordinate it
    lands on and a visibility (front-facing and not hidden behind another part of the head)."""
    from caphuman.render.maps import vertex_normals
    from caphuman.render.rasterizer import rasterize

    H, W = frame.shape[:2]
    posed = pipeline.pose(fitted.validated())
    ndc = posed.ndc
    raster = rasterize(ndc, pipeline.data.f, H, W)
    u = (ndc[:, 0] + 1.0) / 2.0
    v = (1.0 - ndc[:, 1]) / 2.0
    cols = np.clip((u * W).astype(np.int64), 0, W - 1)
    rows = np.clip((v * H).astype(np.int64), 0, H - 1)
    depth = raster.depth[rows, cols]
    # A vertex is seen when it is (nearly) the front-most surface at its pixel and faces the camera.
    extent = float(np.ptp(ndc[:, 2])) or 1.0
    unoccluded = ndc[:, 2] >= depth - 0.02 * extent
    nz = vertex_normals(posed.vertices, pipeline.data.f)[:, 2]
    facing = np.clip((nz - 0.15) / 0.35, 0.0, 1.0)
    inside = (u > 0) & (u < 1) & (v > 0) & (v < 1)
    vis = np.where(unoccluded & inside, facing, 0.0).astype(np.float32)
    seen = vis > 0.5
    pixels = frame[rows[seen], cols[seen]].astype(np.float64) / 255.0
    skin = np.median(pixels, axis=0) if len(pixels) else np.array([0.75, 0.6, 0.5])
    return PhotoProjection(uv=np.stack([u, v], 1).astype(np.float32), visibility=vis, skin=skin)


def head_payload(pipeline, base: HeadState, projection: PhotoProjection | None = None,
                 frame_jpeg: bytes | None = None, key: str = "") -> dict:
    """The JSON-able payload the page's live head is built from (see the module docstring)."""
    data = pipeline.data
    model = pipeline.model
    S, E = model.num_shape, model.num_expression
    V = data.num_vertices
    base = base.validated()
    shape = np.zeros(S)
    given = np.asarray(base.shape[:S], np.float64)
    shape[: given.size] = given
    fixed_expr = np.zeros(E)
    raw = np.asarray(base.expression[:E], np.float64)
    fixed_expr[: raw.size] = raw
    fixed_expr[:NUM_RAW_EXPRESSION] = 0.0  # the raw sliders drive these
    dirs = data.shapedirs.astype(np.float64)
    verts = data.v_template.astype(np.float64) + dirs[:, :, :S] @ shape + dirs[:, :, S:] @ fixed_expr
    blend = [dirs[:, :, S:] @ pipeline.expressions.directions[n][:E] for n in SEMANTIC]
    blend += [dirs[:, :, S + i] if i < E else np.zeros((V, 3)) for i in range(NUM_RAW_EXPRESSION)]
    blend = np.stack(blend)  # (K, V, 3)
    jreg = data.J_regressor.astype(np.float64)
    colors = pipeline.vertex_colors(pipeline.albedo_map(base.albedo))[:, :3]
    has_posedirs = bool(np.any(data.posedirs))
    out = {
        "format": "caphuman.live_head/1",
        "key": key,
        "num_vertices": V,
        "num_faces": int(data.f.shape[0]),
        "num_joints": int(jreg.shape[0]),
        "blend_names": [f"expr.{n}" for n in SEMANTIC] + [f"raw.{i}" for i in range(NUM_RAW_EXPRESSION)],
        "mouth_open_jaw_degrees": MOUTH_OPEN_JAW_DEGREES,
        "faces": _b64(data.f, np.uint32),
        "base": _b64(verts, np.float32),
        "blend": _b64(blend, np.float32),
        "joints": _b64(jreg @ verts, np.float32),
        "blend_joints": _b64(np.einsum("jv,kvc->kjc", jreg, blend), np.float32),
        "parents": [int(p) for p in data.kintree_table[0]],
        "weights": _b64(data.weights, np.float32),
        "posedirs": _b64(data.posedirs, np.float32) if has_posedirs else None,
        "colors": _b64(colors, np.uint8),
        "pivot": [float(x) for x in pipeline.framing.pivot],
        "base_scale": float(pipeline.framing.base_scale),
        "face_height_ndc": FACE_HEIGHT_NDC,
        "sh_constants": [float(c) for c in SH_CONSTANTS],
        "photo": None,
    }
    if projection is not None and frame_jpeg is not None:
        out["photo"] = {
            "uv": _b64(projection.uv, np.float32),
            "visibility": _b64(np.round(projection.visibility * 255), np.uint8),
            "skin": [float(c) for c in projection.skin],
            "jpeg": base64.b64encode(frame_jpeg).decode(),
        }
    return out


__all__ = ["PhotoProjection", "SEMANTIC", "head_payload", "photo_projection"]
