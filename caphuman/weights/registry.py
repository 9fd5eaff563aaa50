"""One table of every model file caphuman can use: where it lives, where it comes from, its licence.

Paths are relative to the checkpoints root (``checkpoints/`` beside ``app.py`` unless
``CAPHUMAN_CHECKPOINTS`` points elsewhere). Public files have a source that
:mod:`caphuman.weights.fetch` downloads (a Hub repo file, a whole Hub repo, or a plain URL);
licence-gated files (FLAME, DECA) have none: the user fetches them by hand from ``manual_url``
and the doctor says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class WeightFile:
    """One model file.

    Sources, first match wins: ``hub_repo`` + ``hub_filename`` (one Hub file), ``hub_repo`` alone
    (a whole Hub repo, a folder), ``url`` (a plain HTTPS file; ``archive="zip"`` unpacks it into
    ``path``, which is then a folder that must hold ``members``). None of them: manual only.
    ``md5``/``sha256``: published checksums (a download that fails one is deleted); without
    them a file is checked by ``check`` (see :mod:`caphuman.weights.fetch`) and by the Hub's own
    SHA-256 where the Hub gives one. ``size_bytes``: exact size when known (None otherwise).
    ``notice``: printed before the download (licence terms the user must accept).
    ``alternatives``: other paths that count as this file when ``path`` is absent (e.g. FLAME releases).
    ``needed_for``: the feature that stops working without it.
    """

    key: str
    path: str
    description: str
    licence: str
    needed_for: str
    hub_repo: str | None = None
    hub_filename: str | None = None
    manual_url: str | None = None
    md5: str | None = None
    sha256: str | None = None
    size_bytes: int | None = None
    gated: bool = False
    url: str | None = None
    archive: str | None = None
    members: tuple[str, ...] = ()
    check: str | None = None
    notice: str | None = None
    alternatives: tuple[str, ...] = ()

    @property
    def downloadable(self) -> bool:
        """True when caphuman can fetch it by itself (not licence-gated, has a source)."""
        return not self.gated and bool(self.hub_repo or self.url)

    @property
    def source(self) -> str:
        """Where it comes from, in words (Hub repo/file, URL, or the manual source)."""
        if self.hub_repo and self.hub_filename:
            return f"huggingface.co/{self.hub_repo} ({self.hub_filename})"
        if self.hub_repo:
            return f"huggingface.co/{self.hub_repo} (whole repo)"
        return self.url or self.manual_url or "unknown"


DECA_DATA_LICENCE = "DECA licence (non-commercial scientific research; https://github.com/yfeng95/DECA/blob/master/LICENSE)"
DECA_DATA_NOTICE = ("DECA's data files are published in its public repository under DECA's licence: "
                    "non-commercial scientific research use only (https://github.com/yfeng95/DECA/blob/master/LICENSE)")

REGISTRY: dict[str, WeightFile] = {w.key: w for w in [
    WeightFile(
        key="caphuman", path="caphuman/caphuman.ckpt",
        description="CapHuman checkpoint: CapFace control net + identity/image projections",
        licence="CC-BY-NC-4.0 (CapHuman project)", needed_for="generation",
        hub_repo="VamosC/CapHuman", hub_filename="caphuman.ckpt",
        md5="6f0086112db9abc6ce4518a458d4d4b8"),
    WeightFile(
        key="backbone", path="backbone/Realistic_Vision_V3.0.ckpt",
        description="SD1.5-family backbone (UNet, text encoder, VAE): Realistic Vision V3.0",
        licence="creativeml-openrail-m", needed_for="generation",
        hub_repo="SG161222/Realistic_Vision_V3.0_VAE", hub_filename="Realistic_Vision_V3.0.ckpt",
        md5="24913fbd1ed9cb7500ee90191bc5d4b2",
        sha256="8fc37222c68165acf779e1bb3d6af501e14d90cbb10e8e0c1e4a88d917e0aea7",
        ),
    WeightFile(
        key="vae", path="vae/vae-ft-mse-840000-ema-pruned.safetensors",
        description="VAE override (sd-vae-ft-mse)", licence="MIT", needed_for="generation",
        hub_repo="stabilityai/sd-vae-ft-mse-original",
        hub_filename="vae-ft-mse-840000-ema-pruned.safetensors"),
    WeightFile(
        key="clip", path="clip-vit-large-patch14",
        description="CLIP ViT-L/14 tokenizer, text encoder and vision tower (diffusers/transformers folder)",
        licence="MIT (openai/CLIP code); see model card", needed_for="generation (image tokens)",
        hub_repo="openai/clip-vit-large-patch14"),
    WeightFile(
        key="lcm_lora", path="lora/fast/lcm-lora-sdv1-5.safetensors",
        description="LCM-LoRA for SD1.5 (few-step latent-consistency sampling; not a style LoRA)",
        licence="openrail++", needed_for="the fast preset (--preset fast / scheduler lcm)",
        hub_repo="latent-consistency/lcm-lora-sdv1-5", hub_filename="pytorch_lora_weights.safetensors"),
    WeightFile(
        key="face_parsing", path="face-parsing/79999_iter.pth",
        description="BiSeNet face parser (19 CelebAMask-HQ classes)", licence="MIT (face-parsing.PyTorch)",
        needed_for="generation (face-only image for the CLIP tokens)",
        # A public Hub mirror of the author's Google Drive file; the MD5 is the one CapHuman's setup gives.
        hub_repo="ManyOtherFunctions/face-parse-bisent", hub_filename="79999_iter.pth",
        manual_url="https://github.com/zllrunning/face-parsing.PyTorch (Google Drive id 154JgKpzCPW82qINcVieuPH3fZ2e0P812)",
        md5="ff26a222ce48a618a1fa820b46223cae", check="torch_state_dict"),
    WeightFile(
        key="facenet", path="facenet/20180402-114759-vggface2.pt",
        description="FaceNet InceptionResnetV1 (VGGFace2)", licence="MIT (facenet-pytorch)",
        needed_for="generation (identity embedding)",
        url="https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
        check="torch_state_dict"),
    WeightFile(
        key="insightface", path="insightface/models/buffalo_l",
        description="insightface buffalo_l pack (SCRFD detector, 68-point landmarks, ArcFace)",
        licence="non-commercial research only (insightface model zoo)",
        needed_for="best face detection, landmarks and identity similarity (an offline fallback exists)",
        url="https://github.com/deepinsight/insightface/releases/download/v0.7/buffalo_l.zip", archive="zip",
        members=("det_10g.onnx", "1k3d68.onnx", "2d106det.onnx", "w600k_r50.onnx"), check="onnx_pack",
        notice="insightface's pretrained models are for NON-COMMERCIAL RESEARCH USE ONLY "
               "(https://github.com/deepinsight/insightface#license); by downloading them you accept this."),
    WeightFile(
        key="deca", path="deca/deca_model.tar",
        description="DECA encoder (E_flame) for fitting FLAME to a photo",
        licence="DECA non-commercial research licence (MPI)", needed_for="FLAME fit of the reference photo",
        manual_url="https://github.com/yfeng95/DECA (Google Drive id 1rp8kdyLPvErw2dTmqtjISRVvQLj6Yzje)",
        md5="b182e51c26e5a73b1f7a5c53cf8cc038", gated=True),
    WeightFile(
        key="flame", path="flame/generic_model.pkl",
        description="FLAME head model: FLAME 2023 Open (flame2023_Open.pkl, CC-BY-4.0) or FLAME 2020 "
                    "(generic_model.pkl)", licence="FLAME 2023 Open: CC-BY-4.0; FLAME 2020: FLAME licence "
                    "(non-commercial)",
        needed_for="the FLAME head (the built-in head is used otherwise)",
        manual_url="https://flame.is.tue.mpg.de (free sign-in) -> Downloads -> FLAME 2023 Open "
                   "(FLAME2023Open.zip), then `python -m caphuman install-flame FLAME2023Open.zip`",
        md5="cfc3b95159b2a8981ebc347170202ba5", gated=True,
        alternatives=("flame/flame2023_Open.pkl", "flame/flame2023.pkl", "flame/flame2023_no_jaw.pkl")),
    WeightFile(
        key="flame_texture", path="flame/FLAME_texture.npz",
        description="FLAME albedo texture space", licence="FLAME texture licence (non-commercial)",
        needed_for="FLAME albedo (a flat skin albedo is used otherwise)",
        manual_url="https://flame.is.tue.mpg.de (TextureSpace.zip)",
        md5="2a3982db7667c32d0dd13351aa6758f7", gated=True),
    WeightFile(
        key="flame_landmarks", path="flame/landmark_embedding.npy",
        description="FLAME 68-point landmark embedding (DECA data)", licence=DECA_DATA_LICENCE,
        needed_for="the FLAME head (landmarks, fit, framing)",
        url="https://raw.githubusercontent.com/yfeng95/DECA/master/data/landmark_embedding.npy",
        manual_url="https://github.com/yfeng95/DECA/tree/master/data",
        md5="a275dadfa4c1bd3c71a9f1411d68f92c", size_bytes=31_292, notice=DECA_DATA_NOTICE),
    WeightFile(
        key="flame_uv", path="flame/head_template.obj",
        description="FLAME UV topology (DECA data)", licence=DECA_DATA_LICENCE,
        needed_for="FLAME albedo texture lookup",
        url="https://raw.githubusercontent.com/yfeng95/DECA/master/data/head_template.obj",
        manual_url="https://github.com/yfeng95/DECA/tree/master/data",
        md5="ddc6d31590f871ebe1844b063b2f8042", size_bytes=563_358, notice=DECA_DATA_NOTICE),
]}


def checkpoints_root() -> Path:
    """The checkpoints folder: ``$CAPHUMAN_CHECKPOINTS`` or ``checkpoints/`` at the repo root."""
    env = os.environ.get("CAPHUMAN_CHECKPOINTS")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parents[2] / "checkpoints"


def local_path(key: str, root: str | os.PathLike | None = None) -> Path:
    """Where file ``key`` lives (present or not): its path, or the first of its alternatives present."""
    base = Path(root) if root is not None else checkpoints_root()
    w = REGISTRY[key]
    for alt in w.alternatives:
        if not (base / w.path).exists() and (base / alt).exists():
            return base / alt
    return base / w.path


@dataclass(frozen=True)
class FileStatus:
    """Presence of one registry entry. ``state``: "present", "missing", "empty" (a folder without
    model files / a zero-byte file) or "bad-checksum"; ``size_bytes`` as found on disk."""

    key: str
    path: Path
    state: str
    size_bytes: int | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.state == "present"


def file_checksum(path: str | os.PathLike, algorithm: str = "md5") -> str:
    """Hex digest of a file (streamed), ``algorithm`` as :func:`hashlib.new` names it."""
    import hashlib

    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def file_status(key: str, root: str | os.PathLike | None = None, verify: bool = False) -> FileStatus:
    """Is ``key`` present? Folders count when they hold at least one file; with ``verify`` the
    MD5 is compared where the registry knows it, else the SHA-256 recorded at download (slow
    for multi-GB files)."""
    w = REGISTRY[key]
    p = local_path(key, root)
    if p.is_dir():
        files = [f for f in p.rglob("*") if f.is_file()]
        if not files:
            return FileStatus(key, p, "empty", 0, "folder has no files")
        return FileStatus(key, p, "present", sum(f.stat().st_size for f in files))
    if not p.is_file():
        return FileStatus(key, p, "missing")
    size = p.stat().st_size
    if size == 0:
        return FileStatus(key, p, "empty", 0, "zero-byte file")
    if verify and w.md5 and p.name == Path(w.path).name:  # the checksum is the main path's, not an alternative's
        got = file_checksum(p, "md5")
        if got != w.md5:
            return FileStatus(key, p, "bad-checksum", size, f"md5 {got}, expected {w.md5}")
    elif verify:  # no published checksum: compare with the SHA-256 recorded when it was downloaded
        from caphuman.weights.record import read_record

        want = read_record(Path(root) if root is not None else checkpoints_root()).get(key, {}).get("sha256")
        if want and file_checksum(p, "sha256") != want:
            return FileStatus(key, p, "bad-checksum", size, "changed since it was downloaded and verified")
    return FileStatus(key, p, "present", size)


def where_to_get(key: str) -> str:
    """One line: how to obtain ``key`` (download command, or the manual source for gated files)."""
    w = REGISTRY[key]
    if w.gated:
        return f"licence-gated, never downloaded automatically: get it from {w.manual_url} and put it at checkpoints/{w.path}"
    if w.downloadable:
        return f"run `python -m caphuman download {key}` ({w.source})"
    return f"download {w.manual_url} to checkpoints/{w.path}"

