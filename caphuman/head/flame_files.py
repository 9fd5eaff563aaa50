"""Convert the user's FLAME / DECA files into a :class:`HeadModelData` (cached as ``.npz``).

Expected files (what users download; see ``checkpoints/README.md``), in one folder:

* the FLAME model — required: ``flame2023_Open.pkl`` (FLAME 2023 Open, CC-BY-4.0; installed by
  ``python -m caphuman install-flame FLAME2023Open.zip``), ``generic_model.pkl`` (FLAME 2020) or
  ``flame2023.pkl`` / ``flame2023_no_jaw.pkl`` (FLAME 2023); ``installed.json`` (written by
  ``install-flame``) says which one is active when several are present;
* ``landmark_embedding.npy`` (DECA ``data/``) — required for landmarks and framing;
* ``head_template.obj`` (DECA ``data/``) — UV layout; optional (flat albedo without it);
* ``FLAME_texture.npz`` (FLAME texture space) — optional (flat skin albedo without it).

Everything is read with the restricted unpickler (:mod:`caphuman.head.safe_pickle`); chumpy is
never imported. The converted arrays are written once to ``<pkl stem>.caphuman.npz`` next to the
pickle (or into ``cache_dir``) and reused while the source files are unchanged.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path

import numpy as np

from caphuman.errors import InputError, MissingWeightsError
from caphuman.head.model_data import FLAME_PARENTS, HeadModelData
from caphuman.head.safe_pickle import load_npy_file, load_pickle_file, to_numpy

#: Number of albedo (texture) components DECA/CapHuman use.
NUM_ALBEDO = 50
#: Flat skin albedo (linear RGB in [0, 1]) used when no texture space is available.
FLAT_SKIN_RGB = (0.78, 0.60, 0.50)
CACHE_VERSION = "2"
#: FLAME release files by name: (release, licence). The first present one is used unless
#: ``installed.json`` names another.
FLAME_RELEASES: dict[str, tuple[str, str]] = {
    "flame2023_Open.pkl": ("FLAME 2023 Open", "CC-BY-4.0"),
    "generic_model.pkl": ("FLAME 2020", "FLAME licence (non-commercial research)"),
    "flame2023.pkl": ("FLAME 2023", "FLAME 2023 licence (non-commercial research)"),
    "flame2023_no_jaw.pkl": ("FLAME 2023 (no jaw)", "FLAME 2023 licence (non-commercial research)"),
    "FLAME2020.pkl": ("FLAME 2020", "FLAME licence (non-commercial research)"),
}
INSTALL_RECORD = "installed.json"
#: The attribution CC-BY-4.0 asks for when FLAME 2023 Open is used.
FLAME_2023_OPEN_ATTRIBUTION = (
    "FLAME 2023 Open by the Max Planck Institute for Intelligent Systems (https://flame.is.tue.mpg.de), "
    "licensed under CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Li, Bolkart, Black, Li, "
    "Romero: 'Learning a model of facial shape and expression from 4D scans', SIGGRAPH Asia 2017.")


#: What to tell someone without FLAME, best option first (doctor, studio banner, errors).
FLAME_HOWTO = (
    "FLAME 2023 Open first (CC-BY-4.0: commercial use allowed, with attribution): sign in (free) at "
    "https://flame.is.tue.mpg.de, open Downloads, click 'FLAME 2023 Open' (FLAME2023Open.zip), then run "
    "`python -m caphuman install-flame FLAME2023Open.zip`. FLAME 2020 (generic_model.pkl from FLAME2020.zip, "
    "non-commercial) installs the same way.")


def flame_release(pkl: str | os.PathLike) -> tuple[str, str]:
    """(release name, licence) of a FLAME pickle, from its file name."""
    return FLAME_RELEASES.get(Path(pkl).name, ("FLAME", "FLAME licence (as you obtained it)"))


def read_obj_uv(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Parse an OBJ's ``v``, ``vt`` and ``f v/vt[/vn]`` lines: (vertices, vt, faces, face_uv).

    Written by hand (a few lines) because mesh libraries merge or split vertices at UV seams,
    while FLAME needs the file's own vertex and UV indexing kept exactly. Returns
    (faces (F,3) int64, vt (T,2) float32, ft (F,3) int64), 0-based.
    """
    vt: list[tuple[float, float]] = []
    faces: list[tuple[int, int, int]] = []
    fuv: list[tuple[int, int, int]] = []
    try:
        with open(path, "r", encoding="latin1") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.startswith("vt "):
                    parts = line.split()
                    vt.append((float(parts[1]), float(parts[2])))
                elif line.startswith("f "):
                    corners = line.split()[1:]
                    if len(corners) != 3:
                        raise InputError(f"{path}:{lineno}: only triangles are supported")
                    vs, ts = [], []
                    for c in corners:
                        idx = c.split("/")
                        if len(idx) < 2 or not idx[1]:
                            raise InputError(f"{path}:{lineno}: face without UV indices")
                        vs.append(int(idx[0]) - 1)
                        ts.append(int(idx[1]) - 1)
                    faces.append(tuple(vs))
                    fuv.append(tuple(ts))
    except (OSError, UnicodeError, ValueError, IndexError) as exc:
        raise InputError(f"cannot read UV topology {path}: {exc}") from None
    if not faces or not vt:
        raise InputError(f"{path}: no textured faces found")
    return np.asarray(faces, np.int64), np.asarray(vt, np.float32), np.asarray(fuv, np.int64)


def _match_uv_faces(f: np.ndarray, obj_f: np.ndarray, obj_ft: np.ndarray) -> np.ndarray:
    """UV corner indices for FLAME's own triangle list (the OBJ may order faces differently)."""
    if obj_f.shape == f.shape and np.array_equal(obj_f, f):
        return obj_ft
    lookup = {tuple(tri): (i, tri) for i, tri in enumerate(obj_f.tolist())}
    ft = np.zeros_like(f)
    for i, tri in enumerate(f.tolist()):
        key = tuple(tri)
        for rot in range(3):
            rotated = tuple(tri[rot:] + tri[:rot])
            if rotated in lookup:
                j, _ = lookup[rotated]
                ft[i] = np.roll(obj_ft[j], rot)
                break
        else:
            raise InputError(f"head_template.obj has no triangle {key}; is it the FLAME topology?")
    return ft


def _albedo_from_texture_space(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """FLAME_texture.npz -> (mean (256,256,3), basis (256,256,3,50)), RGB, /255, nearest 512->256."""
    try:
        with np.load(path, allow_pickle=False) as z:
            mean = np.asarray(z["mean"], np.float32)
            tex_dir = np.asarray(z["tex_dir"], np.float32)
    except (KeyError, ValueError, OSError) as exc:
        raise InputError(f"{path}: not a FLAME texture space file ({exc})") from None
    n = 512 * 512 * 3
    if mean.size != n or tex_dir.size % n:
        raise InputError(f"{path}: unexpected texture sizes {mean.shape}, {tex_dir.shape}")
    mean = mean.reshape(512, 512, 3) / 255.0
    basis = tex_dir.reshape(n, -1)[:, :NUM_ALBEDO].reshape(512, 512, 3, -1) / 255.0
    # DECA: nearest resize 512 -> 256 (keeps every other texel), stored BGR -> RGB.
    mean = mean[::2, ::2, ::-1]
    basis = basis[::2, ::2, ::-1, :]
    return np.ascontiguousarray(mean, np.float32), np.ascontiguousarray(basis, np.float32)


def _fingerprint(paths: list[Path | None]) -> str:
    h = hashlib.sha1(CACHE_VERSION.encode())
    for p in paths:
        if p is None:
            h.update(b"-")
            continue
        st = p.stat()
        h.update(f"{p.name}:{st.st_size}:{st.st_mtime_ns}".encode())
    return h.hexdigest()


def convert_flame(pkl: Path, landmarks: Path, uv_obj: Path | None, texture: Path | None) -> HeadModelData:
    """Read FLAME + DECA files into a :class:`HeadModelData` (no cache)."""
    raw = to_numpy(load_pickle_file(pkl))
    if not isinstance(raw, dict):
        raw = to_numpy(getattr(raw, "__dict__", {}))
    needed = ("v_template", "f", "shapedirs", "posedirs", "J_regressor", "kintree_table", "weights")
    missing = [k for k in needed if k not in raw]
    if missing:
        raise InputError(f"{pkl}: not a FLAME model (missing {', '.join(missing)})")
    v = np.asarray(raw["v_template"], np.float32)
    f = np.asarray(raw["f"], np.int64)
    shapedirs = np.asarray(raw["shapedirs"], np.float32)
    total = shapedirs.shape[2]
    num_shape = 300 if total == 400 else max(total - 100, 0)
    posedirs = np.asarray(raw["posedirs"], np.float32)
    if posedirs.ndim == 2:  # (V*3, 36) layouts
        posedirs = posedirs.reshape(v.shape[0], 3, -1)
    J_reg = np.asarray(raw["J_regressor"], np.float32)
    kintree = np.asarray(raw["kintree_table"], np.int64)
    kintree[0, 0] = -1  # FLAME stores the root's parent as a large unsigned value
    if kintree.shape != (2, 5) or tuple(kintree[0]) != FLAME_PARENTS:
        raise InputError(f"{pkl}: unexpected joint tree {kintree.tolist()}")
    weights = np.asarray(raw["weights"], np.float32)

    lmk = to_numpy(load_npy_file(landmarks))
    if not isinstance(lmk, dict):
        raise InputError(f"{landmarks}: expected a pickled dict of landmark arrays")
    try:
        lm = {
            "static_lmk_faces_idx": np.asarray(lmk["static_lmk_faces_idx"], np.int64).reshape(51),
            "static_lmk_bary_coords": np.asarray(lmk["static_lmk_bary_coords"], np.float32).reshape(51, 3),
            "dynamic_lmk_faces_idx": np.asarray(lmk["dynamic_lmk_faces_idx"], np.int64).reshape(79, 17),
            "dynamic_lmk_bary_coords": np.asarray(lmk["dynamic_lmk_bary_coords"], np.float32).reshape(79, 17, 3),
            "full_lmk_faces_idx": np.asarray(lmk["full_lmk_faces_idx"], np.int64).reshape(68),
            "full_lmk_bary_coords": np.asarray(lmk["full_lmk_bary_coords"], np.float32).reshape(68, 3),
        }
    except (KeyError, ValueError) as exc:
        raise InputError(f"{landmarks}: not DECA's landmark embedding ({exc})") from None

    if uv_obj is not None:
        obj_f, vt, obj_ft = read_obj_uv(uv_obj)
        ft = _match_uv_faces(f, obj_f, obj_ft)
    else:
        vt = np.full((1, 2), 0.5, np.float32)
        ft = np.zeros_like(f)
    if texture is not None and uv_obj is not None:
        albedo_mean, albedo_basis = _albedo_from_texture_space(texture)
    else:
        albedo_mean = np.broadcast_to(np.asarray(FLAT_SKIN_RGB, np.float32), (4, 4, 3)).copy()
        albedo_basis = np.zeros((4, 4, 3, 0), np.float32)
    return HeadModelData(
        v_template=v, f=f, shapedirs=shapedirs, num_shape=num_shape, posedirs=posedirs,
        J_regressor=J_reg, kintree_table=kintree, weights=weights, vt=vt, ft=ft,
        albedo_mean=albedo_mean, albedo_basis=albedo_basis, **lm,
        name=flame_release(pkl)[0], licence=flame_release(pkl)[1], source=str(pkl),
    ).validate()


def find_flame_files(folder: str | os.PathLike) -> dict[str, Path | None]:
    """Locate the FLAME/DECA files in ``folder`` (see the module docstring for names)."""
    import json

    folder = Path(folder)
    pkl = None
    try:
        active = json.loads((folder / INSTALL_RECORD).read_text()).get("model")
    except (OSError, ValueError, AttributeError):
        active = None
    names = ([active] if isinstance(active, str) and active in FLAME_RELEASES else []) + list(FLAME_RELEASES)
    for name in names:
        if (folder / name).is_file():
            pkl = folder / name
            break
    def opt(name: str) -> Path | None:
        p = folder / name
        return p if p.is_file() else None
    return {"model": pkl, "landmarks": opt("landmark_embedding.npy"),
            "uv": opt("head_template.obj"), "texture": opt("FLAME_texture.npz")}


def load_flame(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> HeadModelData:
    """Load FLAME from a folder or a ``.pkl`` path, converting once to a ``.npz`` cache.

    Warns (and carries on with a flat skin albedo) when the UV file or the texture space is
    missing; raises :class:`MissingWeightsError` when the model or the landmark file is missing.
    """
    path = Path(path)
    folder = path.parent if path.suffix == ".pkl" else path
    files = find_flame_files(folder)
    if path.suffix == ".pkl":
        files["model"] = path if path.is_file() else None
    if files["model"] is None:
        raise MissingWeightsError(
            f"no FLAME model in {folder}: sign in (free) at https://flame.is.tue.mpg.de, download FLAME 2023 "
            "Open (FLAME2023Open.zip, CC-BY-4.0) and run `python -m caphuman install-flame FLAME2023Open.zip`")
    if files["landmarks"] is None:
        raise MissingWeightsError(
            f"FLAME needs landmark_embedding.npy next to {files['model'].name}: run "
            "`python -m caphuman download deca-data` (DECA's public data files)")
    if files["uv"] is None:
        warnings.warn("head_template.obj not found next to the FLAME model: using a flat skin albedo", UserWarning)
    elif files["texture"] is None:
        warnings.warn("FLAME_texture.npz not found: using a flat skin albedo", UserWarning)
    fp = _fingerprint([files["model"], files["landmarks"], files["uv"], files["texture"]])
    cache_root = Path(cache_dir) if cache_dir is not None else files["model"].parent
    cache = cache_root / f"{files['model'].stem}.caphuman.npz"
    if cache.is_file():
        try:
            data = HeadModelData.load_npz(cache)
            if data.source.endswith(fp):
                return data
        except InputError:
            pass  # stale or broken cache: rebuild
    data = convert_flame(files["model"], files["landmarks"], files["uv"], files["texture"])
    data.source = f"{files['model']}#{fp}"
    try:
        data.save_npz(cache, compressed=False)
    except OSError as exc:
        warnings.warn(f"could not write FLAME cache {cache}: {exc}", UserWarning)
    return data
