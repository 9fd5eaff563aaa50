"""Where MediaPipe's 478 face-mesh points lie on a head model: the project's own correspondence.

An embedding gives, for each MediaPipe point k, a triangle ``faces[k]`` of the head model and
barycentric coordinates ``bary[k]``, so that the point moves with the model's shape, expression,
jaw, eyes and pose exactly like a vertex; ``weight[k]`` in [0, 1] says how much the fit trusts it
(0: unused). Nothing here comes from a licence-gated file; it is computed from geometry:

* **Built-in head (calibration)**: the head is rendered (its own albedo: painted eyes, brows and
  lips) at a grid of yaw/pitch; MediaPipe runs on each render; each detected point is traced back
  through the rasteriser's triangle and barycentrics to the neutral model surface. Per point, the
  views where the surface faces the camera vote (the sample nearest their weighted mean is kept),
  then left/right pairs are made mirror-symmetric. ``python -m caphuman.face.mesh_embedding``
  writes the result to ``assets/head/builtin_mediapipe.npz``.
* **Any other head (FLAME 2020 / 2023 Open, custom)**: the built-in head's points are carried over
  by a thin-plate-spline warp fitted on the two models' 68 template landmarks (the model's own
  landmark embedding) and snapped to the nearest point of the target surface.

Model space: metres, x toward the head's left (image right at yaw 0), y up, z out of the face.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from caphuman.face.mediapipe_detector import NUM_MESH, NUM_POINTS

ASSET = Path(__file__).resolve().parents[2] / "assets" / "head" / "builtin_mediapipe.npz"
#: Calibration views: yaw x pitch grid (degrees).
CAL_YAWS = (-30.0, -15.0, 0.0, 15.0, 30.0)
CAL_PITCHES = (-12.0, 0.0, 12.0)
CAL_SIZE = 512
#: A view votes for a point where the surface normal's component toward the camera is at least this.
MIN_FACING = 0.2
#: Calibration views with the mouth open (jaw degrees at yaw, pitch 0): the inner-lip points are
#: placed from these only (with closed lips both inner contours collapse onto the seam).
CAL_OPEN_JAWS = (12.0, 20.0)
CAL_OPEN_YAWS = (-15.0, 0.0, 15.0)
#: MediaPipe's inner lip contour (facts of its mesh topology): upper lip, lower lip; the corners
#: (78, 308) belong to neither.
INNER_UPPER_LIP = (191, 80, 81, 82, 13, 312, 311, 310, 415)
INNER_LOWER_LIP = (95, 88, 178, 87, 14, 317, 402, 318, 324)
#: Trust of the face-oval points (MediaPipe puts them on the silhouette, which slides over the
#: surface as the head turns) relative to interior points.
OVAL_WEIGHT = 0.25


@dataclass
class MeshEmbedding:
    """``faces`` (478,) int64 triangle ids, ``bary`` (478, 3), ``weight`` (478,) in [0, 1],
    ``mirror`` (478,) index of each point's left/right counterpart (itself on the midline, -1 when
    unknown), ``model_key``: the head
    model's geometry hash the embedding belongs to, ``source``: how it was made."""

    faces: np.ndarray
    bary: np.ndarray
    weight: np.ndarray
    mirror: np.ndarray
    model_key: str
    source: str

    def points(self, vertices: np.ndarray, f: np.ndarray) -> np.ndarray:
        """(478, 3) points on a mesh with ``vertices`` (V, 3) and triangles ``f`` (F, 3)."""
        tri = np.asarray(vertices, np.float64)[np.asarray(f)[self.faces]]  # (478, 3, 3)
        return np.einsum("nk,nkc->nc", self.bary, tri)

    def save(self, path) -> None:
        np.savez_compressed(path, faces=self.faces.astype(np.int32), bary=self.bary.astype(np.float32),
                            weight=self.weight.astype(np.float32), mirror=self.mirror.astype(np.int16),
                            model_key=np.array(self.model_key), source=np.array(self.source))

    @classmethod
    def load(cls, path) -> "MeshEmbedding":
        with np.load(path, allow_pickle=False) as z:
            emb = cls(faces=z["faces"].astype(np.int64), bary=z["bary"].astype(np.float64),
                      weight=z["weight"].astype(np.float64), mirror=z["mirror"].astype(np.int64),
                      model_key=str(z["model_key"]), source=str(z["source"]))
        if emb.faces.shape != (NUM_POINTS,) or emb.bary.shape != (NUM_POINTS, 3):
            raise ValueError(f"{path}: not a {NUM_POINTS}-point embedding")
        return emb


def model_key(data) -> str:
    """Hash of a head model's topology and neutral geometry (an embedding is valid for it only)."""
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(data.f, np.int64).tobytes())
    h.update(np.round(np.asarray(data.v_template, np.float64), 6).tobytes())
    return h.hexdigest()[:16]


def _oval_indices() -> set[int]:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_FACE_OVAL

    return {i for e in FACEMESH_FACE_OVAL for i in e}


def _base_weights() -> np.ndarray:
    w = np.ones(NUM_POINTS)
    w[sorted(_oval_indices())] = OVAL_WEIGHT
    return w


@functools.lru_cache(maxsize=1)
def _eye_contour_indices() -> frozenset[int]:
    from mediapipe.python.solutions.face_mesh_connections import FACEMESH_LEFT_EYE, FACEMESH_RIGHT_EYE

    return frozenset(i for e in FACEMESH_LEFT_EYE | FACEMESH_RIGHT_EYE for i in e)


def triangle_parts(data) -> dict[str, set[int]]:
    """Triangles by what moves them: "eyeball" (mostly eye joints 3, 4), "jaw" (joint 2), "skin"
    (not eyeball), "upper" (neither), from the model's own skinning weights (FLAME's joint layout),
    and "lid": skin triangles that the eyes-closed slider moves (:func:`_lid_triangles`)."""
    w = np.asarray(data.weights, np.float64)
    f = np.asarray(data.f, np.int64)
    wt = w[f].mean(axis=1)  # (F, J)
    top = np.argmax(wt, axis=1)
    eyes = (top == 3) | (top == 4) if wt.shape[1] > 4 else np.zeros(len(f), bool)
    jaw = (wt[:, 2] > 0.5) & ~eyes if wt.shape[1] > 2 else np.zeros(len(f), bool)
    return {"eyeball": set(np.flatnonzero(eyes).tolist()), "jaw": set(np.flatnonzero(jaw).tolist()),
            "skin": set(np.flatnonzero(~eyes).tolist()),
            "upper": set(np.flatnonzero(~eyes & ~jaw).tolist()),
            "lid": _lid_triangles(data) - set(np.flatnonzero(eyes).tolist())}


#: A triangle is on an eyelid when the eyes-closed slider moves it at least this share of the largest move.
LID_MOTION = 0.3


def _lid_triangles(data) -> set[int]:
    """Triangles the model's eyes-closed slider moves (its lids), through the expression basis."""
    from caphuman.controls.expressions import ExpressionSolver

    lm = _template_landmarks(data)
    S = int(data.num_shape)
    dirs = np.asarray(data.shapedirs, np.float64)[:, :, S:]
    if dirs.shape[2] == 0:
        return set()
    tri = np.asarray(data.f)[np.asarray(data.full_lmk_faces_idx)]
    basis = np.einsum("lk,lkce->lce", np.asarray(data.full_lmk_bary_coords, np.float64), dirs[tri])
    d = ExpressionSolver.for_model(lm, basis).directions.get("eyes_closed")
    if d is None:
        return set()
    move = np.linalg.norm(dirs @ d, axis=1)  # (V,) metres at eyes_closed = 1
    if move.max() <= 0:
        return set()
    moving = move >= LID_MOTION * move.max()
    return set(np.flatnonzero(moving[np.asarray(data.f)].all(axis=1)).tolist())


def allowed_part(k: int) -> str:
    """Which triangles MediaPipe point ``k`` may lie on: the iris on the eyeballs, the lower inner
    lip on the jaw, the upper inner lip off it, every other point on the skin (never the eyeballs:
    an eyelid point must move with the lid, not with the gaze: the eye contours lie on the lids)."""
    if k >= NUM_MESH:
        return "eyeball"
    if k in INNER_LOWER_LIP:
        return "jaw"
    if k in INNER_UPPER_LIP:
        return "upper"
    return "skin"


def _snap_by_part(data, P: np.ndarray, which: np.ndarray, parts=None):
    """(faces, bary) of the closest allowed surface point for each point ``P[i]`` of index ``which[i]``."""
    parts = parts or triangle_parts(data)
    V = np.asarray(data.v_template, np.float64)
    faces = np.zeros(len(P), np.int64)
    bary = np.zeros((len(P), 3))
    groups: dict[str, list[int]] = {}
    for i, k in enumerate(which):
        name = allowed_part(int(k))
        if not parts.get(name):
            name = "skin"
        groups.setdefault(name, []).append(i)
    for name, rows in groups.items():
        rows = np.asarray(rows)
        faces[rows], bary[rows] = _closest_on_surface(V, data.f, P[rows], allowed=parts[name])
    return faces, bary


# ----------------------------------------------------------------------------- surface helpers
def _closest_on_surface(vertices: np.ndarray, f: np.ndarray, pts: np.ndarray, allowed=None, k: int = 24):
    """(faces, bary) of the closest surface points to ``pts`` (N, 3) among triangles ``allowed``
    (default all): the ``k`` triangles with the nearest centroids are tested exactly. (trimesh's
    query needs the optional rtree package; this is the same computation on a KD-tree.)"""
    from scipy.spatial import cKDTree

    V = np.asarray(vertices, np.float64)
    F = np.asarray(f, np.int64)
    tri_ids = np.arange(len(F)) if allowed is None else np.asarray(sorted(allowed), np.int64)
    T = V[F[tri_ids]]  # (M, 3, 3)
    k = min(k, len(tri_ids))
    _, cand = cKDTree(T.mean(1)).query(pts, k=k)
    cand = np.asarray(cand).reshape(len(pts), k)
    best_d = np.full(len(pts), np.inf)
    best_t = np.zeros(len(pts), np.int64)
    best_b = np.zeros((len(pts), 3))
    for j in range(k):
        t = cand[:, j]
        b = _closest_bary(T[t], pts)
        q = np.einsum("nk,nkc->nc", b, T[t])
        d = np.linalg.norm(q - pts, axis=1)
        better = d < best_d
        best_d[better], best_t[better], best_b[better] = d[better], t[better], b[better]
    return tri_ids[best_t], best_b


def _closest_bary(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentrics (N, 3) of the closest point of each triangle (N, 3, 3) to p (N, 3): the
    unconstrained projection when it falls inside, else the best of the three edges."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    e0, e1, d = b - a, c - a, p - a
    m00, m01, m11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    r0, r1 = (d * e0).sum(1), (d * e1).sum(1)
    det = np.maximum(m00 * m11 - m01 * m01, 1e-30)
    u = (m11 * r0 - m01 * r1) / det
    v = (m00 * r1 - m01 * r0) / det
    out = np.stack([1 - u - v, u, v], axis=1)
    outside = (u < 0) | (v < 0) | (u + v > 1)
    if outside.any():
        cands = []
        for i0, i1 in ((0, 1), (1, 2), (2, 0)):
            s0, s1 = tri[:, i0], tri[:, i1]
            e = s1 - s0
            t = np.clip(((p - s0) * e).sum(1) / np.maximum((e * e).sum(1), 1e-30), 0.0, 1.0)
            bb = np.zeros((len(p), 3))
            bb[np.arange(len(p)), i0] = 1 - t
            bb[np.arange(len(p)), i1] += t
            q = s0 + t[:, None] * e
            cands.append((np.linalg.norm(q - p, axis=1), bb))
        dist = np.stack([c_[0] for c_ in cands], 1)
        pick = np.argmin(dist, 1)
        edge = np.stack([c_[1] for c_ in cands], 1)[np.arange(len(p)), pick]
        out[outside] = edge[outside]
    return out


def _mirror_pairs(P: np.ndarray, valid: np.ndarray, midline: float = 0.002) -> np.ndarray:
    """Index of each point's mirror image (x -> -x): itself within ``midline`` metres of x = 0,
    else the nearest valid point on the other side, kept only where the pairing is mutual;
    -1 where there is none (invalid points, one-sided matches)."""
    from scipy.spatial import cKDTree

    n = len(P)
    mirror = np.full(n, -1, np.int64)
    mid = valid & (np.abs(P[:, 0]) < midline)
    mirror[mid] = np.flatnonzero(mid)
    side = valid & ~mid
    idx = np.flatnonzero(side)
    if len(idx) >= 2:
        _, j = cKDTree(P[idx]).query(P[idx] * np.array([-1.0, 1.0, 1.0]))
        cand = idx[j]
        ok = np.sign(P[cand, 0]) != np.sign(P[idx, 0])
        mirror[idx[ok]] = cand[ok]
    bad = (mirror >= 0) & (mirror[np.maximum(mirror, 0)] != np.arange(n))
    mirror[bad] = -1
    return mirror


# ----------------------------------------------------------------------------- calibration
def calibrate(pipeline, detector=None, yaws=CAL_YAWS, pitches=CAL_PITCHES, size: int = CAL_SIZE) -> MeshEmbedding:
    """Embedding of MediaPipe's points on ``pipeline``'s head by rendering it (module docstring).
    ``detector``: a :class:`~caphuman.face.mediapipe_detector.MediaPipeDetector` (default: new)."""
    from caphuman.controls.state import HeadState, Pose
    from caphuman.face.mediapipe_detector import MediaPipeDetector
    from caphuman.render.rasterizer import to_pixel_space

    det = detector or MediaPipeDetector(max_faces=1)
    data = pipeline.data
    f = np.asarray(data.f, np.int64)
    V0 = np.asarray(data.v_template, np.float64)
    samples: list[list[tuple]] = [[] for _ in range(NUM_POINTS)]
    inner = set(INNER_UPPER_LIP) | set(INNER_LOWER_LIP)
    views = [(y, p, 0.0) for y in yaws for p in pitches] + [(y, 0.0, j) for j in CAL_OPEN_JAWS for y in CAL_OPEN_YAWS]
    for yaw, pitch, jaw in views:
        state = HeadState(pose=Pose(yaw=yaw, pitch=pitch, jaw=jaw))
        res = pipeline.render(state, size)
        faces = det.detect(res.preview)
        if not faces or faces[0].mesh is None:
            continue
        mesh = faces[0].mesh
        px = to_pixel_space(res.posed.ndc, size, size)[:, :2]  # pixel centres at integers
        _, _, maps, _, _ = pipeline._rasterize(state, size, True)
        fid = maps.raster.face_idx
        verts = res.posed.vertices.astype(np.float64)
        nrm = np.cross(verts[f[:, 1]] - verts[f[:, 0]], verts[f[:, 2]] - verts[f[:, 0]])
        nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
        for k in range(NUM_POINTS):
            if (k in inner) != (jaw > 0):  # inner lips from open-mouth views only, the rest from closed
                continue
            c, r = mesh[k, 0] - 0.5, mesh[k, 1] - 0.5  # MediaPipe: centres at +0.5
            ci, ri = int(round(c)), int(round(r))
            if not (0 <= ri < size and 0 <= ci < size) or fid[ri, ci] < 0:
                continue
            t = int(fid[ri, ci])
            facing = float(nrm[t, 2])
            if facing < MIN_FACING:
                continue
            b = _bary2d(px[f[t]], np.array([c, r]))
            samples[k].append((t, b, facing, b @ V0[f[t]]))
    faces_out = np.zeros(NUM_POINTS, np.int64)
    bary_out = np.full((NUM_POINTS, 3), 1.0 / 3.0)
    trust = np.zeros(NUM_POINTS)
    P = np.zeros((NUM_POINTS, 3))
    n_views = len(yaws) * len(pitches)  # (the inner lips' views are fewer: see below)
    for k, ss in enumerate(samples):
        if not ss:
            continue
        pts = np.array([s[3] for s in ss])
        w = np.array([s[2] for s in ss])
        mean = (pts * w[:, None]).sum(0) / w.sum()
        best = int(np.argmin(np.linalg.norm(pts - mean, axis=1)))
        faces_out[k], bary_out[k], P[k] = ss[best][0], ss[best][1], ss[best][3]
        spread = float(np.sqrt(np.average(np.sum((pts - mean) ** 2, axis=1), weights=w)))
        # Trust: share of views that saw the point, lowered where the views disagree (by more than ~5 mm).
        seen_of = len(CAL_OPEN_JAWS) * len(CAL_OPEN_YAWS) if k in inner else n_views
        trust[k] = min(1.0, len(ss) / (0.5 * seen_of)) * float(np.exp(-(spread / 0.005) ** 2 / 2))
    valid = trust > 0.02
    mirror = _mirror_pairs(P, valid)
    paired = mirror >= 0
    # Mirror-symmetric: each pair meets halfway between the point and its partner's mirror image.
    sym = P.copy()
    sym[paired] = (P[paired] + P[mirror[paired]] * np.array([-1.0, 1.0, 1.0])) / 2.0
    fs, bs = _snap_by_part(data, sym[valid], np.flatnonzero(valid))
    faces_out[valid], bary_out[valid] = fs, bs
    trust[paired] = np.minimum(trust[paired], trust[mirror[paired]])
    weight = np.where(valid, _base_weights() * trust, 0.0)
    return MeshEmbedding(faces=faces_out, bary=bary_out, weight=weight, mirror=mirror, model_key=model_key(data),
                         source=f"calibrated on {len(views)} renders of {data.name}")


def _bary2d(tri: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Barycentric coordinates of 2-D ``p`` in triangle ``tri`` (3, 2), clipped into the triangle."""
    a, b, c = tri
    m = np.array([[b[0] - a[0], c[0] - a[0]], [b[1] - a[1], c[1] - a[1]]])
    try:
        u, v = np.linalg.solve(m, p - a)
    except np.linalg.LinAlgError:
        return np.array([1.0, 0.0, 0.0])
    w = np.clip(np.array([1.0 - u - v, u, v]), 0.0, None)
    return w / max(w.sum(), 1e-12)


# ----------------------------------------------------------------------------- transfer
def _tps_warp(src: np.ndarray, dst: np.ndarray, smooth: float = 1e-6):
    """3-D thin-plate spline (kernel |r|) mapping ``src`` (L, 3) onto ``dst`` (L, 3) + affine part."""
    L = len(src)
    K = np.linalg.norm(src[:, None] - src[None], axis=2)
    A = np.concatenate([np.ones((L, 1)), src], axis=1)
    M = np.zeros((L + 4, L + 4))
    M[:L, :L] = K + smooth * np.eye(L)
    M[:L, L:] = A
    M[L:, :L] = A.T
    rhs = np.concatenate([dst, np.zeros((4, 3))])
    coef = np.linalg.lstsq(M, rhs, rcond=None)[0]
    w, aff = coef[:L], coef[L:]

    def warp(p):
        k = np.linalg.norm(p[:, None] - src[None], axis=2)
        return k @ w + np.concatenate([np.ones((len(p), 1)), p], axis=1) @ aff

    return warp


def _template_landmarks(data) -> np.ndarray:
    bary = np.asarray(data.full_lmk_bary_coords, np.float64)
    tri = np.asarray(data.f)[np.asarray(data.full_lmk_faces_idx)]
    return np.einsum("lk,lkc->lc", bary, np.asarray(data.v_template, np.float64)[tri])


def transfer(source_data, source: MeshEmbedding, target_data) -> MeshEmbedding:
    """Carry ``source`` (an embedding on ``source_data``) over to ``target_data`` (module docstring)."""
    P = source.points(source_data.v_template, source_data.f)
    warp = _tps_warp(_template_landmarks(source_data), _template_landmarks(target_data))
    Q = warp(P)
    faces, bary = _snap_by_part(target_data, Q, np.arange(NUM_POINTS))
    return MeshEmbedding(faces=faces, bary=bary, weight=source.weight.copy(), mirror=source.mirror.copy(),
                         model_key=model_key(target_data),
                         source=f"transferred from {source_data.name} by the 68 template landmarks")


# ----------------------------------------------------------------------------- lookup
def mediapipe_mirror() -> np.ndarray | None:
    """(478,) the left/right counterpart of each MediaPipe point (a property of MediaPipe's mesh,
    measured on the built-in head's calibration; the midline points map to themselves), or None
    when the shipped calibration is missing."""
    global _MIRROR
    if _MIRROR is None and ASSET.is_file():
        try:
            _MIRROR = MeshEmbedding.load(ASSET).mirror
        except (OSError, ValueError, KeyError):
            return None
    return _MIRROR


_MIRROR: np.ndarray | None = None
_CACHE: dict[str, MeshEmbedding] = {}


def embedding_for(data) -> MeshEmbedding:
    """The embedding of a head model (memoised by geometry): the shipped built-in one when it
    matches, else calibrated (the built-in head) or transferred (any other model)."""
    key = model_key(data)
    if key in _CACHE:
        return _CACHE[key]
    from caphuman.head.resolve import load_head

    builtin = load_head("builtin").data
    bkey = model_key(builtin)
    shipped = None
    if ASSET.is_file():
        try:
            shipped = MeshEmbedding.load(ASSET)
        except (OSError, ValueError, KeyError):
            shipped = None
    if shipped is None or shipped.model_key != bkey:
        from caphuman.preview import HeadPreviewPipeline

        shipped = calibrate(HeadPreviewPipeline(builtin))
    _CACHE[bkey] = shipped
    if key != bkey:
        _CACHE[key] = transfer(builtin, shipped, data)
    return _CACHE[key]


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Calibrate MediaPipe's face-mesh points on the built-in head.")
    ap.add_argument("--out", default=str(ASSET))
    args = ap.parse_args(argv)
    from caphuman.head.resolve import load_head
    from caphuman.preview import HeadPreviewPipeline

    emb = calibrate(HeadPreviewPipeline(load_head("builtin").data))
    emb.save(args.out)
    print(f"{args.out}: {int((emb.weight > 0).sum())}/{NUM_POINTS} points embedded ({emb.source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
