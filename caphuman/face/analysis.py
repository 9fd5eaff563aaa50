"""Per-reference photo analysis, cached by image content (reference §1.3 steps 1-2, 7, 9, 10).

:func:`analyze_reference` turns one photo into a :class:`ReferenceAnalysis`: the square output
frame (see :mod:`caphuman.face.crop`), every detected face and the chosen one, the fitted
:class:`HeadState` (the sliders' start values; "reset to reference" returns to it), and what the
identity encoders need (native RGB image, face-only image, FaceNet embedding, CLIP tokens).
Encoders whose weights are missing are skipped with a warning, never a crash.

Results are cached by a hash of the decoded pixels plus the settings, so moving a slider or
generating again never recomputes them.
"""

from __future__ import annotations

import copy
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from caphuman.controls.state import HeadState
from caphuman.face.crop import FrameCrop
from caphuman.face.detection import Face


# ----------------------------------------------------------------------------- fit target
@dataclass
class FitTarget:
    """What the landmark fit needs from the active head model. ``template`` (68, 3) metres,
    ``framing`` (camera.Framing), ``center`` rotation centre (3,), bases (68, 3, K) per
    coefficient, ``kind``: "flame", "builtin" or "custom" (DECA codes only apply to FLAME)."""

    template: np.ndarray
    framing: Any
    center: np.ndarray
    shape_basis: np.ndarray | None
    expr_basis: np.ndarray | None
    kind: str = "builtin"
    name: str = "head"
    data: Any = None
    _dense: Any = None

    def dense_fitter(self):
        """The :class:`~caphuman.face.dense_fit.DenseFitter` of this head (built once), or None when
        the target has no model data."""
        if self._dense is None and self.data is not None:
            from caphuman.controls.expressions import ExpressionSolver
            from caphuman.face.dense_fit import DenseFitter
            from caphuman.face.mesh_embedding import embedding_for

            directions = ExpressionSolver.for_model(self.template, self.expr_basis).directions \
                if self.expr_basis is not None and self.expr_basis.shape[2] else {}
            self._dense = DenseFitter(self.data, self.framing, directions, embedding_for(self.data))
        return self._dense

    @classmethod
    def from_model_data(cls, data, kind: str = "builtin") -> "FitTarget":
        from caphuman.render.camera import Framing

        bary = data.full_lmk_bary_coords.astype(np.float64)
        tri = data.f[data.full_lmk_faces_idx]  # (68, 3)
        template = np.einsum("lk,lkc->lc", bary, data.v_template.astype(np.float64)[tri])
        dirs = data.shapedirs.astype(np.float64)[tri]  # (68, 3, 3, N)
        basis = np.einsum("lk,lkcn->lcn", bary, dirs)
        center = (data.J_regressor.astype(np.float64) @ data.v_template.astype(np.float64))[0]
        S = int(data.num_shape)
        return cls(template=template, framing=Framing.from_landmarks(template), center=center,
                   shape_basis=basis[:, :, :S], expr_basis=basis[:, :, S:], kind=kind,
                   name=f"{kind}:{data.name}", data=data)


# ----------------------------------------------------------------------------- encoders
@dataclass
class Encoders:
    """Loaded identity encoders (None when the weights are missing) and why they are missing."""

    deca: Any = None
    parser: Any = None
    facenet: Any = None
    clip: Any = None
    warnings: list[str] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return tuple(id(m) if m is not None else None for m in (self.deca, self.parser, self.facenet, self.clip))


_ENCODERS: dict[str, Encoders] = {}


def load_encoders(root: str | os.PathLike | None = None, clip: bool = True) -> Encoders:
    """Load every encoder whose weights are present (memoised per checkpoints folder)."""
    from caphuman.errors import CapHumanError
    from caphuman.weights.registry import REGISTRY, file_status, local_path

    cache_key = f"{root}|{clip}"
    if cache_key in _ENCODERS:
        return _ENCODERS[cache_key]
    enc = Encoders()

    def attempt(key: str, loader, missing_note: str):
        if not file_status(key, root).ok:
            enc.warnings.append(f"{REGISTRY[key].path} missing: {missing_note} (see `python -m caphuman doctor`)")
            return None
        try:
            return loader(local_path(key, root))
        except CapHumanError as exc:
            enc.warnings.append(f"{REGISTRY[key].path} not usable: {exc}")
            return None

    from caphuman.face.deca import load_deca_encoder
    from caphuman.face.facenet import load_facenet
    from caphuman.face.parsing import load_bisenet

    enc.deca = attempt("deca", load_deca_encoder, "no DECA fit, the head is fitted to the detected points")
    enc.parser = attempt("face_parsing", load_bisenet, "no face-only image")
    enc.facenet = attempt("facenet", load_facenet, "no FaceNet identity embedding")
    if clip:
        from caphuman.face.clip_image import ClipImageEncoder

        enc.clip = attempt("clip", ClipImageEncoder.from_pretrained, "no CLIP image tokens")
    _ENCODERS[cache_key] = enc
    return enc


# ----------------------------------------------------------------------------- result
@dataclass
class ReferenceAnalysis:
    """Everything derived from one reference photo (treat as read-only; it is cached).

    ``image``: the photo after intake, RGB uint8 (H, W, 3) native resolution. ``frame``: the
    output frame, RGB uint8 (size, size, 3), cut from ``image`` at ``crop``. ``faces``: all
    detections in photo pixels; ``chosen``: index of the face used. ``state``: the fitted head
    state (sliders' start values). ``fit``: "deca", "landmarks68", "keypoints5", "eyes", "box"
    or "none". ``deca_code``/``tform``: DECA's 236-vector split and frame->crop transform (DECA
    path only). ``face_only``: ``image`` with non-face classes white (parser weights needed).
    ``facenet``: (512,) unit vector. ``clip_tokens``: (1, 257, 1024) for ViT-L/14.
    ``reprojection``: rms point error of the fit / face width (dense fit only). ``landmarker``:
    what located the face's points (e.g. "mediapipe face mesh (478 points)").
    """

    key: str
    image: np.ndarray
    frame: np.ndarray
    crop: FrameCrop
    backend: str
    faces: list[Face]
    chosen: int
    state: HeadState
    fit: str
    warnings: list[str] = field(default_factory=list)
    fit_rms: float | None = None
    deca_code: Any = None
    tform: np.ndarray | None = None
    face_only: np.ndarray | None = None
    facenet: np.ndarray | None = None
    clip_tokens: np.ndarray | None = None
    reprojection: float | None = None
    landmarker: str = ""
    _body: Any = None

    @property
    def face(self) -> Face:
        return self.faces[self.chosen]

    def body(self):
        """The photo's body and hand points (:class:`~caphuman.face.body.BodyPose`), found on first
        use and kept (None when MediaPipe is not installed)."""
        if self._body is None:
            from caphuman.face.body import detect_body

            self._body = detect_body(self.image)
        return self._body

    def reset_state(self) -> HeadState:
        """A fresh copy of the fitted state ("reset to reference")."""
        return copy.deepcopy(self.state)

    def to_dict(self) -> dict:
        """JSON-friendly summary: detector, faces, chosen face, frame box, warnings, head state."""
        return {
            "format": "caphuman.analysis/1",
            "image_size": [int(self.image.shape[1]), int(self.image.shape[0])],
            "frame": self.crop.to_dict(),
            "detector": self.backend,
            "landmarker": self.landmarker,
            "faces": [f.to_dict() for f in self.faces],
            "chosen_face": self.chosen,
            "fit": self.fit,
            "fit_rms_ndc": None if self.fit_rms is None or not np.isfinite(self.fit_rms) else round(self.fit_rms, 5),
            "reprojection_face_width": None if self.reprojection is None else round(float(self.reprojection), 5),
            "warnings": list(self.warnings),
            "identity": {"face_only": self.face_only is not None, "facenet": self.facenet is not None,
                         "clip_tokens": None if self.clip_tokens is None else list(self.clip_tokens.shape)},
            "head_state": self.state.to_dict(),
        }


# ----------------------------------------------------------------------------- cache
class AnalysisCache:
    """Thread-safe LRU of analyses keyed by (pixel hash, settings), bounded by count and by the
    bytes of the arrays it holds (``max_bytes``; the newest entry is always kept)."""

    def __init__(self, max_items: int = 16, max_bytes: int = 128 * 1024 * 1024):
        self.max_items = max_items
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, ReferenceAnalysis] = OrderedDict()
        self._sizes: dict[tuple, int] = {}
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def nbytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def get(self, key: tuple) -> ReferenceAnalysis | None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return item

    def put(self, key: tuple, value: ReferenceAnalysis) -> None:
        with self._lock:
            self._items[key] = value
            self._sizes[key] = _held_bytes(value)
            self._items.move_to_end(key)
            total = sum(self._sizes.values())
            while len(self._items) > 1 and (len(self._items) > self.max_items or total > self.max_bytes):
                old, _ = self._items.popitem(last=False)
                total -= self._sizes.pop(old, 0)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._sizes.clear()


def _held_bytes(a: ReferenceAnalysis) -> int:
    return sum(int(getattr(x, "nbytes", 0) or 0) for x in (a.image, a.frame, a.face_only, a.facenet, a.clip_tokens))


DEFAULT_CACHE = AnalysisCache()


# ----------------------------------------------------------------------------- analysis
def analyze_reference(image, size: int = 512, *, target: FitTarget | None = None,
                      encoders: Encoders | None = None, detector=None, backend: str = "auto",
                      cache: AnalysisCache | None = DEFAULT_CACHE, what: str = "the reference photo",
                      max_side: int | None = 4096) -> ReferenceAnalysis:
    """Analyse a reference photo (path, bytes, array or PIL image); cached by pixel content.

    ``size``: output frame side in pixels. ``target``: the head model to fit (None: no fit, the
    default state with a warning). ``encoders``: loaded identity encoders (None: none run;
    see :func:`load_encoders`). ``detector``/``backend``: face detector or its name.
    Raises InputError (unreadable image) or NoFaceError.
    """
    from caphuman.face.detection import get_detector
    from caphuman.face.intake import load_image, pixel_hash

    rgb = load_image(image, max_side=max_side)
    notes: list[str] = []
    if detector is None:
        detector, notes = get_detector(backend)
    enc = encoders if encoders is not None else Encoders()
    key = (pixel_hash(rgb), int(size), detector.name, id(detector),
           None if target is None else (target.name, id(target)), enc.key)
    if cache is not None:
        hit = cache.get(key)
        if hit is not None:
            return hit
    result = _analyze(rgb, key[0], int(size), target, enc, detector, notes, what)
    if cache is not None:
        cache.put(key, result)
    return result


def _analyze(rgb, key, size, target, enc, detector, notes, what) -> ReferenceAnalysis:
    from caphuman.face.crop import square_frame
    from caphuman.face.detection import detect_faces

    det = detect_faces(rgb, detector=detector, what=what)
    warnings = list(notes) + det.warnings + list(enc.warnings)
    face = det.face
    crop = square_frame(rgb.shape[0], rgb.shape[1], face.box, size)
    frame = crop.apply(rgb)

    from caphuman.face.detection import landmarker_name

    state, fit, rms, code, tform, reproj = HeadState(), "none", None, None, None, None
    if target is None:
        warnings.append("no head model loaded: the head state was not fitted")
    elif enc.deca is not None and target.kind == "flame":
        state, code, tform = _deca_fit(enc.deca, frame, crop, face, target)
        fit = "deca"
    else:
        if enc.deca is not None:
            warnings.append("DECA codes are FLAME coefficients; the active head is not FLAME, so the "
                            "head was fitted to the detected points instead")
        state, fit, rms, reproj = _landmark_fit(face, crop, target)
        if fit == "box":
            warnings.append("only a face box was found: pose starts frontal; placement is approximate")

    face_only = facenet_vec = tokens = None
    if enc.parser is not None:
        from caphuman.face.parsing import face_only as whiten, parse_face

        face_only = whiten(rgb, parse_face(enc.parser, rgb))
    if enc.facenet is not None:
        from caphuman.face.facenet import facenet_embedding

        # The original crops with MTCNN's box; the chosen detector's box stands in for it.
        facenet_vec = facenet_embedding(enc.facenet, rgb, face.box)
    if enc.clip is not None:
        if face_only is None:
            warnings.append("CLIP image tokens computed on the whole photo (no face parser weights)")
        tokens = enc.clip.tokens(face_only if face_only is not None else rgb)

    return ReferenceAnalysis(key=key, image=rgb, frame=frame, crop=crop, backend=det.backend, faces=det.faces,
                             chosen=det.chosen, state=state, fit=fit, warnings=warnings, fit_rms=rms,
                             deca_code=code, tform=tform, face_only=face_only, facenet=facenet_vec,
                             clip_tokens=tokens, reprojection=reproj, landmarker=landmarker_name(det.backend, face))


def _to_ndc(crop: FrameCrop):
    from caphuman.face.crop import frame_pixels_to_ndc

    return lambda pts: frame_pixels_to_ndc(crop.to_frame(pts), crop.size)


def _landmark_fit(face, crop, target):
    """(state, fit kind, rms NDC, reprojection / face width or None): the dense fit when the face
    has MediaPipe's mesh and the target its model, else the sparse fit of :mod:`caphuman.face.fit`."""
    from caphuman.face.fit import fit_landmarks, observation_from_face

    to_ndc = _to_ndc(crop)
    fitter = target.dense_fitter() if face.mesh is not None else None
    if fitter is not None:
        l, t, r, b = face.box
        width = float(np.ptp(to_ndc(np.array([[l, t], [r, t]], np.float64))[:, 0]))
        res = fitter.fit(to_ndc(face.mesh[:, :2]), face_width_ndc=width)
        return res.state, res.kind, res.rms, res.reprojection
    obs = observation_from_face(face, to_ndc)
    res = fit_landmarks(obs, target.template, target.framing, target.center,
                        target.shape_basis, target.expr_basis)
    return res.state, res.kind, res.rms, None


def _deca_fit(net, frame, crop, face, target):
    """DECA path (§4.1-4.4) in the square frame: crop box from the 68 landmarks (kpt68 rule)
    or from the detector box (DECA's box rule), 224 crop, E_flame, split, tform -> state."""
    from caphuman.face.crop import box_from_points, deca_crop, deca_square, deca_tform
    from caphuman.face.deca import encode_crop, head_state_from_deca

    if face.landmarks is not None:
        box = box_from_points(crop.to_frame(face.landmarks))
        cx, cy, side = deca_square(box, from_landmarks=True)
    else:
        l, t = crop.to_frame(np.array(face.box[:2]))
        r, b = crop.to_frame(np.array(face.box[2:]))
        cx, cy, side = deca_square((l, t, r, b), from_landmarks=False)
    tform = deca_tform(cx, cy, side)
    code = encode_crop(net, deca_crop(frame, tform))
    return head_state_from_deca(code, tform, crop.size, target.framing), code, tform


_TARGETS: dict[int, FitTarget] = {}


def target_for_pipeline(pipeline) -> FitTarget:
    """FitTarget of a :class:`caphuman.preview.HeadPreviewPipeline` (memoised per pipeline)."""
    t = _TARGETS.get(id(pipeline))
    if t is None:
        data = pipeline.data
        kind = "flame" if "flame" in (data.name or "").lower() else "builtin"
        t = FitTarget.from_model_data(data, kind)
        t.framing = pipeline.framing  # the exact framing the renderer uses
        _TARGETS[id(pipeline)] = t
    return t
