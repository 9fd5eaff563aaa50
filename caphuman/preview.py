"""HeadPreviewPipeline: HeadState -> posed head -> 9-channel hint, preview picture, mesh.

The one object the CLI (``python -m caphuman preview``), the Gradio studio and the generator use
to turn slider values into geometry and images. It reads top to bottom like the algorithm:

1. state -> model parameters (semantic sliders solved into expression coefficients, angles ->
   axis-angle; :meth:`params_from_state`);
2. head model forward (linear blend skinning, landmarks; :meth:`pose`);
3. placement into the output frame (orthographic; :mod:`caphuman.render.camera`);
4. one rasterisation -> hint + preview (:mod:`caphuman.render.maps`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
import torch

from caphuman.controls.expressions import ExpressionSolver
from caphuman.controls.pose import axis_angle_from_ypr, eye_axis_angle, jaw_axis_angle
from caphuman.controls.state import MOUTH_OPEN_JAW_DEGREES, HeadState
from caphuman.head.model import HeadModel, HeadParams
from caphuman.head.model_data import HeadModelData
from caphuman.render.camera import Framing, project
from caphuman.render.maps import hint_to_images, render_hint
from caphuman.render.preview_image import PHOTO_DIM, compose_preview
from caphuman.render.rasterizer import to_pixel_space
from caphuman.render.shading import directional_sh

MAX_SIZE = 2048


@dataclass
class PosedHead:
    """vertices (V, 3) metres (posed model space = world), ndc (V, 3) frame NDC,
    landmarks (68, 3) world and landmarks_ndc (68, 3)."""

    vertices: np.ndarray
    ndc: np.ndarray
    landmarks: np.ndarray
    landmarks_ndc: np.ndarray


@dataclass
class PreviewResult:
    """hint (9, H, W) float32; preview uint8 (H, W, 3); maps: uint8 pictures of normals,
    albedo, shading; mask (H, W) bool; landmarks_px (68, 2) (col, row)."""

    hint: np.ndarray
    preview: np.ndarray
    maps: dict[str, np.ndarray]
    mask: np.ndarray
    landmarks_px: np.ndarray
    posed: PosedHead


class HeadPreviewPipeline:
    """Poses and renders one head model. Not thread-safe for concurrent mutation (it has none:
    its caches only memoise pure functions of their inputs)."""

    def __init__(self, head: HeadModelData):
        self.data = head
        self.model = HeadModel(head).eval()
        self.framing = Framing.from_landmarks(self.model.template_landmarks())
        self.expressions = ExpressionSolver.for_model(self.model.template_landmarks(), self.model.landmark_basis())
        self._albedo_key: tuple | None = None
        self._albedo_map = head.albedo_mean

    # ------------------------------------------------------------------ 1. parameters
    def params_from_state(self, state: HeadState) -> HeadParams:
        controls = state.expression_controls or {}
        expr = np.zeros(self.model.num_expression)
        raw = np.asarray(state.expression[: self.model.num_expression], np.float64)
        expr[: raw.size] = raw
        expr += self.expressions.coefficients(controls, self.model.num_expression)
        jaw = state.pose.jaw + MOUTH_OPEN_JAW_DEGREES * float(controls.get("mouth_open", 0.0))
        t = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None]  # noqa: E731
        return HeadParams(
            shape=t(np.asarray(state.shape, np.float32).reshape(-1)),
            expression=t(expr),
            global_pose=t(axis_angle_from_ypr(state.pose.yaw, state.pose.pitch, state.pose.roll)),
            jaw_pose=t(jaw_axis_angle(jaw)),
            eye_pose=t(np.tile(eye_axis_angle(state.pose.eye_yaw, state.pose.eye_pitch), 2)),
        )

    # ------------------------------------------------------------------ 2-3. geometry
    @torch.no_grad()
    def pose(self, state: HeadState) -> PosedHead:
        with _single_thread():
            out = self.model(self.params_from_state(state))
        verts = out.vertices[0].numpy()
        lms = out.landmarks[0].numpy()
        return PosedHead(
            vertices=verts,
            ndc=project(verts, state.placement, self.framing),
            landmarks=lms,
            landmarks_ndc=project(lms, state.placement, self.framing),
        )

    def albedo_map(self, coeffs: list[float]) -> np.ndarray:
        """UV albedo map for albedo coefficients (mean when the model has no albedo basis)."""
        k = self.data.num_albedo
        c = np.zeros(k, np.float32)
        given = np.asarray(coeffs[:k], np.float32)
        c[: given.size] = given
        key = tuple(c.tolist())
        if key != self._albedo_key:
            tex = self.data.albedo_mean
            if k and np.any(c):
                tex = tex + np.tensordot(self.data.albedo_basis, c, axes=([3], [0]))
            self._albedo_map = np.ascontiguousarray(tex, np.float32)
            self._albedo_key = key
        return self._albedo_map

    @staticmethod
    def light_coefficients(state: HeadState) -> np.ndarray:
        light = state.lighting
        if light.sh is not None:
            return np.asarray(light.sh, np.float64).reshape(9, 3)
        return directional_sh(light.azimuth, light.elevation, light.intensity, light.ambient, light.color)

    # ------------------------------------------------------------------ 4. render
    def render(self, state: HeadState, size: int | tuple[int, int] = 512, backdrop: np.ndarray | None = None,
               draw_landmarks: bool = False, validate: bool = True, texture=None) -> PreviewResult:
        """Render ``state`` at ``size`` (int or (H, W)); ``backdrop``: uint8 (H, W, 3) frame photo.

        ``texture`` (a :class:`~caphuman.render.photo_texture.FaceTexture`): the preview picture
        shows the person's face on the head (and the backdrop undimmed), like the studio's live
        head. It changes only ``preview``: the hint and the maps are the same with or without it.
        """
        state, posed, maps, H, W = self._rasterize(state, size, validate)
        lm_px = to_pixel_space(posed.landmarks_ndc, H, W)[:, :2]
        shaded, dim = maps.hint[6:9], PHOTO_DIM
        if texture is not None:
            from caphuman.render.photo_texture import textured_shading

            shaded = textured_shading(maps.raster, self.data.f, maps.hint, self.light_coefficients(state),
                                      texture.photo, texture.uv, texture.visibility, texture.skin)
            dim = 1.0
        preview = compose_preview(shaded, maps.mask, backdrop, lm_px if draw_landmarks else None, dim=dim)
        return PreviewResult(hint=maps.hint, preview=preview, maps=hint_to_images(maps.hint),
                             mask=maps.mask, landmarks_px=lm_px, posed=posed)

    def hint(self, state: HeadState, size: int | tuple[int, int] = 512, validate: bool = True) -> np.ndarray:
        """Only the 9-channel hint (9, H, W) float32 -- what generation needs; the same array as
        ``render(...).hint`` (the hint does not depend on the backdrop), without the preview pictures."""
        return self._rasterize(state, size, validate)[2].hint

    def _rasterize(self, state: HeadState, size, validate: bool):
        """(validated state, posed head, render maps, H, W)."""
        if validate:
            state = state.validated()
        H, W = (size, size) if isinstance(size, int) else size
        if not (8 <= H <= MAX_SIZE and 8 <= W <= MAX_SIZE):
            from caphuman.errors import InputError

            raise InputError(f"render size must be between 8 and {MAX_SIZE} pixels, got {H}x{W}")
        posed = self.pose(state)
        maps = render_hint(posed.vertices, posed.ndc, self.data.f, self.data.ft, self.data.vt,
                           self.albedo_map(state.albedo), self.light_coefficients(state), H, W)
        return state, posed, maps, H, W

    # ------------------------------------------------------------------ export
    def mesh(self, state: HeadState):
        """The posed head as a ``trimesh.Trimesh`` (metres, centred on the framing pivot, y up,
        z toward the viewer — glTF's convention) with vertex colours from the albedo map."""
        import trimesh

        state = state.validated()
        posed = self.pose(state)
        verts = posed.vertices - np.asarray(self.framing.pivot, np.float32)
        colors = self.vertex_colors(self.albedo_map(state.albedo))
        return trimesh.Trimesh(vertices=verts, faces=self.data.f, vertex_colors=colors, process=False)

    def vertex_colors(self, albedo_map: np.ndarray) -> np.ndarray:
        """uint8 RGBA per vertex: albedo sampled at each vertex's first UV corner."""
        V = self.data.num_vertices
        uv_of_vertex = np.zeros(V, np.int64)
        uv_of_vertex[self.data.f.reshape(-1)[::-1]] = self.data.ft.reshape(-1)[::-1]
        uv = self.data.vt[uv_of_vertex]
        th, tw = albedo_map.shape[:2]
        cols = np.clip((uv[:, 0] * tw).astype(np.int64), 0, tw - 1)
        rows = np.clip(((1.0 - uv[:, 1]) * th).astype(np.int64), 0, th - 1)
        rgb = np.clip(albedo_map[rows, cols], 0.0, 1.0)
        rgba = np.concatenate([rgb, np.ones((V, 1), np.float32)], axis=1)
        return (rgba * 255.0 + 0.5).astype(np.uint8)

    def export_glb(self, state: HeadState) -> bytes:
        return self.mesh(state).export(file_type="glb")

    def export_obj(self, state: HeadState) -> str:
        buf = self.mesh(state).export(file_type="obj")
        return buf.decode() if isinstance(buf, bytes) else buf


class _single_thread:
    """Run torch on one thread: the head forward is ~0.5 ms of small matmuls, and a multi-thread
    barrier on a busy 2-core machine stalls it to ~30 ms (measured with benchmarks/preview.py).
    A lock serialises the forwards of concurrent sessions so the thread setting is restored
    correctly (each forward holds it for about a millisecond)."""

    _lock = threading.Lock()

    def __enter__(self):
        self._lock.acquire()
        self.n = torch.get_num_threads()
        if self.n != 1:
            torch.set_num_threads(1)

    def __exit__(self, *exc):
        try:
            if self.n != 1:
                torch.set_num_threads(self.n)
        finally:
            self._lock.release()


def save_mesh(pipeline: HeadPreviewPipeline, state: HeadState, path: str) -> None:
    """Write GLB or OBJ by file extension."""
    from caphuman.errors import InputError

    lower = str(path).lower()
    if lower.endswith(".glb"):
        data = pipeline.export_glb(state)
        with open(path, "wb") as fh:
            fh.write(data)
    elif lower.endswith(".obj"):
        with open(path, "w") as fh:
            fh.write(pipeline.export_obj(state))
    else:
        raise InputError(f"--mesh must end in .glb or .obj, got {path}")


__all__ = ["HeadPreviewPipeline", "PosedHead", "PreviewResult", "save_mesh"]
