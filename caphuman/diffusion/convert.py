"""Original ``caphuman.ckpt`` + an SD1.5-family backbone -> a diffusers folder ``CapHumanPipeline`` loads.

Weight precedence follows the original's loading order (reference §1.2, §5.3):

* CapFace trunk, mask head, ``id_linear``, ``img_linear``: ``caphuman.ckpt``;
* UNet: the backbone; VAE: ``--vae`` if given, else the backbone;
* text encoder: the backbone if it has ``cond_stage_model.transformer.text_model.*``, else ``caphuman.ckpt``;
* CLIP vision: ``caphuman.ckpt``'s ``control_cond_stage_model.transformer.*`` if present, else the CLIP repo;
* tokenizer, image processor (and model configs of the CLIP towers): the CLIP repo/folder.

The diffusers converters of ``diffusers.loaders.single_file_utils`` do the renaming; this module adds
the mask head, the projections, the 9-channel hint config, the CLIP-vision copy and a key report in
which every source key is accounted for.

Streamed (memory): one component at a time. Its keys are read as views of a memory-mapped file
(:mod:`caphuman.diffusion.tensor_files`), checked against the model built on the meta device (no
weights allocated), written tensor by tensor in the output dtype, then dropped; so the peak is
about one component's source bytes, not the whole pipeline twice.

Schedule: when the backbone (else ``caphuman.ckpt``) stores ``alphas_cumprod`` in a precision below
fp32, or a non-standard one, the scheduler config carries ``trained_betas`` that reproduce it exactly
(:func:`caphuman.diffusion.schedulers.stored_schedule_betas`), as the original samples with the
loaded buffer; fp32 files with the standard schedule keep the plain configuration. Pickles are loaded with ``weights_only=True``, or, when that
refuses a Lightning checkpoint's extras, with the restricted unpickler of
:mod:`caphuman.weights.checkpoint_unpickler` (foreign objects become inert placeholders, nothing runs).
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from caphuman.errors import CapHumanError, InputError, MissingWeightsError, UnsafePickleError

CLIP_REPO = "openai/clip-vit-large-patch14"
CONTROL_PREFIX = "control_model."
UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
TEXT_PREFIX = "cond_stage_model.transformer."
VISION_PREFIX = "control_cond_stage_model.transformer."
STRICT_PREFIXES = (CONTROL_PREFIX, "id_linear.", "img_linear.")
#: Top-level LDM buffers that are recomputed from the schedule (reference §5.2).
SCHEDULE_BUFFERS = frozenset({
    "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod", "sqrt_one_minus_alphas_cumprod",
    "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
    "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
    "logvar",
})

SAFE_ALTERNATIVES = (
    "use a .safetensors file instead (e.g. Realistic_Vision_V3.0.safetensors, "
    "vae-ft-mse-840000-ema-pruned.safetensors) or a diffusers-layout repo such as "
    "SG161222/Realistic_Vision_V3.0_VAE"
)


# ---------------------------------------------------------------------------- safe loading
def load_state_dict(path: str | os.PathLike, log=None) -> dict:
    """Tensors of a ``.safetensors`` file or a pickle (``.ckpt``/``.pth``/``.bin``), unwrapping ``state_dict``.

    Pickles go through :func:`caphuman.weights.safe_load.load_checkpoint_state_dict`: ``weights_only=True``
    first, then the restricted unpickler for Lightning extras (callbacks, hyper-parameters ...), which
    are dropped and reported to ``log``; nothing in the file is executed. A pickle record it will not
    rebuild raises :class:`UnsafePickleError`.
    """
    from caphuman.diffusion.tensor_files import WeightsFile

    f = WeightsFile(path, log=log)
    return f.tensors(lambda _k: True)


# ---------------------------------------------------------------------------- key report
@dataclass
class KeyReport:
    """What happened to every key of one source file."""

    source: str
    keys: set[str]
    consumed: set[str] = field(default_factory=set)
    superseded: dict[str, str] = field(default_factory=dict)  # key -> by what
    ignored: dict[str, str] = field(default_factory=dict)  # key -> why (not a weight)

    @property
    def unaccounted(self) -> set[str]:
        return self.keys - self.consumed - set(self.superseded) - set(self.ignored)

    def mark_consumed(self, source: dict, outputs: list[dict]) -> None:
        """Mark keys of ``source`` whose tensors (or views of them) ended up in ``outputs``."""
        used = {(t.data_ptr(), t.numel()) for out in outputs for t in out.values() if t is not None}
        self.consumed |= {k for k, t in source.items() if (t.data_ptr(), t.numel()) in used}

    def supersede(self, prefix: str, by: str) -> None:
        for k in self.keys:
            if k.startswith(prefix) and k not in self.consumed and k not in self.ignored:
                self.superseded[k] = by

    def format(self) -> str:
        n = len(self.keys)
        acc = n - len(self.unaccounted)
        lines = [f"{self.source}: {n} keys, {acc}/{n} accounted for ({100.0 * acc / max(n, 1):.1f}%): "
                 f"{len(self.consumed)} loaded, {len(self.superseded)} superseded, {len(self.ignored)} not weights"]
        for by in sorted(set(self.superseded.values())):
            lines.append(f"  superseded by {by}: {sum(v == by for v in self.superseded.values())}")
        for why in sorted(set(self.ignored.values())):
            lines.append(f"  skipped ({why}): {sum(v == why for v in self.ignored.values())}")
        for k in sorted(self.unaccounted)[:20]:
            lines.append(f"  UNUSED: {k}")
        return "\n".join(lines)


class _Recorder(dict):
    """A dict that remembers which keys a converter read."""

    def __init__(self, *a):
        super().__init__(*a)
        self.read: set[str] = set()

    def __getitem__(self, k):
        self.read.add(k)
        return super().__getitem__(k)

    def get(self, k, default=None):
        if k in self:
            self.read.add(k)
        return super().get(k, default)


# ---------------------------------------------------------------------------- configs
def load_original_config(path: str | os.PathLike | None) -> dict:
    """The original model yaml (``cldm_v15.yaml`` format); the SD1.5 CapHuman config when ``path`` is None."""
    import yaml

    if path is None:
        from caphuman.diffusion.sizes import ModelSizes

        return yaml.safe_load(ModelSizes.sd15().original_yaml())
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"original config not found: {path}")
    cfg = yaml.safe_load(path.read_text())
    try:
        cfg["model"]["params"]["control_stage_config"]["params"]["hint_channels"]
    except (KeyError, TypeError):
        raise InputError(f"{path} is not a CapHuman/ControlNet model config (no control_stage_config)") from None
    return cfg


def capface_config_from_original(cfg: dict, checkpoint: dict) -> dict:
    """CapFaceModel kwargs from ``control_stage_config`` (diffusers' own ControlNet helper needs a
    checkpoint argument it does not pass, so the UNet helper is reused on the control params)."""
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    params = cfg["model"]["params"]
    control = params["control_stage_config"]["params"]
    as_unet = {"model": {"params": {**params, "unet_config": {"params": {**control, "out_channels": 4}}}}}
    u = create_unet_diffusers_config_from_ldm(as_unet, checkpoint, image_size=512)
    return dict(in_channels=u["in_channels"], conditioning_channels=control["hint_channels"],
                block_out_channels=tuple(u["block_out_channels"]), down_block_types=tuple(u["down_block_types"]),
                layers_per_block=u["layers_per_block"], attention_head_dim=u["attention_head_dim"],
                cross_attention_dim=u["cross_attention_dim"], use_linear_projection=u["use_linear_projection"],
                transformer_layers_per_block=u["transformer_layers_per_block"])


# ---------------------------------------------------------------------------- checking and writing
def _meta_model(build):
    """``build()`` on the meta device: the module tree and state-dict shapes, no weights allocated."""
    import torch

    with torch.device("meta"):
        return build()


def _check_against(model, state_dict: dict, what: str) -> None:
    """``state_dict`` has exactly the model's keys and shapes (else an InputError naming a few)."""
    missing = sorted(k for k, v in state_dict.items() if v is None)
    if missing:
        raise InputError(f"{what}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    own = model.state_dict()
    if set(own) != set(state_dict):
        raise InputError(f"{what}: key mismatch, missing {sorted(set(own) - set(state_dict))[:5]} "
                         f"unexpected {sorted(set(state_dict) - set(own))[:5]} (is --original-config right?)")
    for k, v in own.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise InputError(f"{what}: {k} has shape {list(state_dict[k].shape)} in the file, the model expects "
                             f"{list(v.shape)} (shape mismatch; is --original-config right?)")


def _write_diffusers(model, state_dict: dict, folder: Path, dtype) -> None:
    """``config.json`` + ``diffusion_pytorch_model.safetensors`` as ``ModelMixin.save_pretrained`` names them."""
    from caphuman.diffusion.tensor_files import write_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    model.save_config(folder)
    write_safetensors(folder / "diffusion_pytorch_model.safetensors", {k: state_dict[k] for k in model.state_dict()},
                      dtype=dtype)


def _write_transformers(model, state_dict: dict, folder: Path, dtype) -> None:
    """``config.json`` + ``model.safetensors`` as ``PreTrainedModel.save_pretrained`` names them."""
    from caphuman.diffusion.tensor_files import write_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    config = model.config
    config.architectures = [type(model).__name__]
    config.dtype = str(dtype).removeprefix("torch.")
    config.save_pretrained(folder)
    write_safetensors(folder / "model.safetensors", {k: state_dict[k] for k in model.state_dict()}, dtype=dtype)


def _release() -> None:
    """Drop what the last component mapped (cycles included) before the next one is read."""
    import gc

    gc.collect()


def _clip_state_dict(model, sd: dict) -> dict:
    """Drop ``position_ids`` (non-persistent in current transformers) and match the model's own prefixing."""
    sd = {k: v for k, v in sd.items() if not k.endswith("embeddings.position_ids")}
    own = set(model.state_dict())
    for tower in ("text_model.", "vision_model."):
        if any(k.startswith(tower) for k in sd) and not any(k.startswith(tower) for k in own):
            sd = {k[len(tower):] if k.startswith(tower) else k: v for k, v in sd.items()}
    return sd


def _clip_source(clip: str | os.PathLike | None) -> str:
    if clip is not None:
        return str(clip)
    from caphuman.weights.registry import local_path

    local = local_path("clip")
    return str(local) if local.exists() else CLIP_REPO


def _clip_part(source: str, loader, subfolder: str):
    """Load from a transformers CLIP repo/folder, or from a diffusers folder's ``subfolder`` (failures,
    a code-running ``pytorch_model.bin`` included, are one clear CapHumanError)."""
    from caphuman.weights.safe_load import load_pretrained

    what = f"CLIP {subfolder.replace('_', ' ')}"
    if Path(source, subfolder).is_dir():
        return load_pretrained(loader, source, what, subfolder=subfolder)
    return load_pretrained(loader, source, what)


def _is_single_file(source: str) -> bool:
    return Path(source).is_file()


def _from_pretrained(loader, source: str, what: str, **kwargs):
    from caphuman.weights.safe_load import load_pretrained

    return load_pretrained(loader, source, what, **kwargs).eval()


# ---------------------------------------------------------------------------- main entry
@dataclass
class ConversionResult:
    out_dir: Path
    reports: list[KeyReport]
    #: ``trained_betas`` of the files' own schedule, or None (the standard SD1.5 schedule).
    trained_betas: list[float] | None = None

    @property
    def complete(self) -> bool:
        return all(not r.unaccounted for r in self.reports)


def _schedule(files, log) -> list[float] | None:
    """The files' schedule as ``trained_betas``: the last file loaded that stores ``alphas_cumprod``
    wins (backbone after ``caphuman.ckpt``, as the original loads them); None = the standard one."""
    from caphuman.diffusion.schedulers import stored_schedule_betas

    for f in reversed(files):
        if f is not None and "alphas_cumprod" in f:
            stored = f.tensors(["alphas_cumprod"])["alphas_cumprod"]
            betas = stored_schedule_betas(stored, where=f.name)
            if betas is not None:
                log(f"sampling schedule: alphas_cumprod as stored in {f.name} ({f.dtype_name('alphas_cumprod')}), "
                    "as the original samples with it")
            return betas
    return None


def convert_caphuman(
    caphuman_ckpt: str | os.PathLike,
    out_dir: str | os.PathLike,
    backbone: str | os.PathLike,
    vae: str | os.PathLike | None = None,
    original_config: str | os.PathLike | None = None,
    clip: str | os.PathLike | None = None,
    identity: str | os.PathLike | None = None,
    half: bool = False,
    log=print,
) -> ConversionResult:
    """Convert and save, one component at a time; returns the key reports. Raises ``CapHumanError``
    subclasses on user errors."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders.single_file_utils import (
        convert_controlnet_checkpoint, convert_ldm_clip_checkpoint, convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint, create_unet_diffusers_config_from_ldm, create_vae_diffusers_config_from_ldm,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModel

    from caphuman.diffusion.capface import CapFaceModel
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.diffusion.schedulers import make_scheduler
    from caphuman.diffusion.tensor_files import WeightsFile
    from caphuman.face.clip_image import pil_processor_class

    warnings.filterwarnings("ignore", message=".*image_size.*deprecated", category=FutureWarning)
    dtype = torch.float16 if half else torch.float32
    cfg = load_original_config(original_config)
    clip_src = _clip_source(clip)
    backbone = str(backbone)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} is an existing file; name a folder")

    # ---- caphuman.ckpt: CapFace + projections (+ CLIP vision, decoy copies of the SD parts)
    log(f"reading {caphuman_ckpt}")
    ck = WeightsFile(caphuman_ckpt, log=log)
    ck_report = KeyReport(ck.name, set(ck.keys()))
    ck_report.ignored.update({k: "DDPM schedule buffer" for k in ck.keys() if k in SCHEDULE_BUFFERS})
    ck_report.ignored.update({k: "position_ids buffer" for k in ck.keys() if k.endswith("embeddings.position_ids")})
    if f"{CONTROL_PREFIX}time_embed.0.weight" not in ck:
        raise InputError(f"{caphuman_ckpt} has no {CONTROL_PREFIX}* keys: not a CapHuman checkpoint")
    for name in ("id_linear", "img_linear"):
        if f"{name}.weight" not in ck:
            raise InputError(f"{caphuman_ckpt} lacks id_linear/img_linear")

    src = ck.tensors(lambda k: k.startswith(STRICT_PREFIXES))
    control = _Recorder({k[len(CONTROL_PREFIX):]: v for k, v in src.items() if k.startswith(CONTROL_PREFIX)})
    capface_cfg = capface_config_from_original(cfg, {})
    trunk = convert_controlnet_checkpoint(control, capface_cfg)
    read = set(control.read)
    extra = {"mask_head.0.weight": control.get("mask_predict.0.weight"),
             "mask_head.0.bias": control.get("mask_predict.0.bias")}
    read |= {"mask_predict.0.weight", "mask_predict.0.bias"}
    for name in ("id_linear", "img_linear"):
        for p in ("weight", "bias"):
            extra[f"{name}.{p}"] = src.get(f"{name}.{p}")
    capface_sd = {f"controlnet.{k}": v for k, v in trunk.items()} | extra
    capface_cfg.update(id_embedding_dim=ck.shape("id_linear.weight")[1],
                       image_embedding_dim=ck.shape("img_linear.weight")[1])
    ck_report.consumed |= {CONTROL_PREFIX + k for k in read if k in control}
    ck_report.mark_consumed({k: v for k, v in src.items() if k.startswith(("id_linear.", "img_linear."))},
                            [capface_sd])
    strict_unused = sorted(k for k in ck_report.unaccounted if k.startswith(STRICT_PREFIXES))
    if strict_unused:
        raise InputError(f"unexpected CapFace keys in {ck.name} ({len(strict_unused)}), "
                         f"e.g. {strict_unused[:5]}: not the expected architecture")
    capface = _meta_model(lambda: CapFaceModel(**capface_cfg))
    _check_against(capface, capface_sd, "CapFace")
    _write_diffusers(capface, capface_sd, out_dir / "capface", dtype)
    del src, control, trunk, extra, capface_sd
    _release()

    # ---- backbone: UNet (+ VAE, text encoder)
    reports = [ck_report]
    bb = None
    if _is_single_file(backbone):
        log(f"reading {backbone}")
        bb = WeightsFile(backbone, log=log)
        bb_report = KeyReport(bb.name, set(bb.keys()))
        bb_report.ignored.update({k: "position_ids buffer" for k in bb.keys() if k.endswith("embeddings.position_ids")})
        bb_report.ignored.update({k: "DDPM schedule buffer" for k in bb.keys() if k in SCHEDULE_BUFFERS})
        bb_report.ignored.update({k: "EMA copy (not used)" for k in bb.keys() if k.startswith("model_ema.")})
        reports.append(bb_report)
        unet_cfg = create_unet_diffusers_config_from_ldm(cfg, {}, image_size=512)
        src = bb.tensors(lambda k: k.startswith(UNET_PREFIX))
        unet_sd = convert_ldm_unet_checkpoint(dict(src), unet_cfg)
        unet = _meta_model(lambda: UNet2DConditionModel(**unet_cfg))
        _check_against(unet, unet_sd, "UNet")
        _write_diffusers(unet, unet_sd, out_dir / "unet", dtype)
        bb_report.mark_consumed(src, [unet_sd])
        del src, unet_sd
        ck_report.supersede(UNET_PREFIX, f"backbone {bb.name}")
        text_keys = [k for k in bb.keys() if k.startswith(TEXT_PREFIX + "text_model.")]
        text_from, text_file = (bb_report, bb) if text_keys else (ck_report, ck)
    else:
        log(f"loading diffusers backbone {backbone}")
        unet = _from_pretrained(UNet2DConditionModel.from_pretrained, backbone, "backbone UNet", subfolder="unet")
        _write_diffusers(unet, unet.state_dict(), out_dir / "unet", dtype)
        unet = _meta_model(lambda: UNet2DConditionModel(**unet.config))
        ck_report.supersede(UNET_PREFIX, f"backbone {backbone}")
        text_from, text_file = None, None
    _release()

    # ---- VAE: --vae > backbone
    vae_cfg = create_vae_diffusers_config_from_ldm(cfg, {}, image_size=512)
    vae_file = None
    if vae is not None and _is_single_file(str(vae)):
        vae_file = WeightsFile(vae, log=log)
        v_report = KeyReport(vae_file.name, set(vae_file.keys()))
        reports.append(v_report)
        v_report.ignored.update({k: "EMA copy (not used)" for k in vae_file.keys() if k.startswith("model_ema.")})
        src = vae_file.tensors(lambda k: not k.startswith("model_ema."))
        v_sd = convert_ldm_vae_checkpoint(dict(src), vae_cfg)
        vae_by = f"--vae {vae_file.name}"
    elif vae is not None:
        src, v_report = None, None
        vae_model = _from_pretrained(AutoencoderKL.from_pretrained, str(vae), "VAE")
        v_sd = vae_model.state_dict()
        vae_by = f"--vae {vae}"
    elif bb is not None:
        src, v_report = bb.tensors(lambda k: k.startswith(VAE_PREFIX)), reports[1]
        v_sd = convert_ldm_vae_checkpoint(dict(src), vae_cfg)
        vae_by = f"backbone {bb.name}"
    else:
        src, v_report = None, None
        vae_model = _from_pretrained(AutoencoderKL.from_pretrained, backbone, "backbone VAE", subfolder="vae")
        v_sd = vae_model.state_dict()
        vae_cfg = dict(vae_model.config)
        vae_by = f"backbone {backbone}"
    vae_meta = _meta_model(lambda: AutoencoderKL(**vae_cfg))
    _check_against(vae_meta, v_sd, "VAE")
    _write_diffusers(vae_meta, v_sd, out_dir / "vae", dtype)
    if src is not None:
        v_report.mark_consumed(src, [v_sd])
    del src, v_sd
    vae_model = None
    _release()
    ck_report.supersede(VAE_PREFIX, vae_by)
    if bb is not None and vae is not None:
        reports[1].supersede(VAE_PREFIX, vae_by)

    # ---- text encoder + tokenizer
    if text_file is not None:
        text_cfg = _clip_part(clip_src, CLIPTextConfig.from_pretrained, "text_encoder")
        src = text_file.tensors(lambda k: k.startswith(TEXT_PREFIX))
        text_encoder = _meta_model(lambda: CLIPTextModel(text_cfg))
        sd = _clip_state_dict(text_encoder, convert_ldm_clip_checkpoint(dict(src)))
        _check_against(text_encoder, sd, "text encoder")
        _write_transformers(text_encoder, sd, out_dir / "text_encoder", dtype)
        text_from.consumed |= {k for k in src if not k.endswith("position_ids")}
        if text_from is not ck_report:
            ck_report.supersede(TEXT_PREFIX, f"backbone {bb.name}")
        del src, sd
    else:
        model = _from_pretrained(CLIPTextModel.from_pretrained, backbone, "backbone text encoder",
                                 subfolder="text_encoder")
        text_encoder = _meta_model(lambda: CLIPTextModel(model.config))
        _write_transformers(text_encoder, model.state_dict(), out_dir / "text_encoder", dtype)
        del model
        ck_report.supersede(TEXT_PREFIX, f"backbone {backbone}")
    _release()
    tokenizer = _clip_part(clip_src, CLIPTokenizer.from_pretrained, "tokenizer")

    # ---- CLIP vision tower + image processor
    vision_keys = [k for k in ck.keys() if k.startswith(VISION_PREFIX)]
    if vision_keys:
        vision_cfg = _clip_part(clip_src, CLIPVisionConfig.from_pretrained, "image_encoder")
        src = ck.tensors(vision_keys)
        image_encoder = _meta_model(lambda: CLIPVisionModel(vision_cfg))
        sd = _clip_state_dict(image_encoder, {k[len(VISION_PREFIX):]: v for k, v in src.items()})
        _check_against(image_encoder, sd, "CLIP vision")
        _write_transformers(image_encoder, sd, out_dir / "image_encoder", dtype)
        ck_report.consumed |= {k for k in vision_keys if not k.endswith("position_ids")}
        del src, sd
    else:
        log(f"{ck.name} has no CLIP-vision copy; using {clip_src}")
        model = _clip_part(clip_src, CLIPVisionModel.from_pretrained, "image_encoder").eval()
        image_encoder = _meta_model(lambda: CLIPVisionModel(model.config))
        _write_transformers(image_encoder, model.state_dict(), out_dir / "image_encoder", dtype)
        del model
    _release()
    # the PIL processor explicitly (transformers 5 would pick the torchvision one when torchvision is installed)
    feature_extractor = _clip_part(clip_src, pil_processor_class().from_pretrained, "feature_extractor")

    # ---- schedule, report, the small parts and the index
    trained_betas = _schedule([ck, bb], log)
    for r in reports:
        log(r.format())
    scheduler = make_scheduler("ddim", trained_betas)
    tokenizer.save_pretrained(out_dir / "tokenizer")
    feature_extractor.save_pretrained(out_dir / "feature_extractor")
    scheduler.save_pretrained(out_dir / "scheduler")
    pipe = CapHumanPipeline(vae=vae_meta, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            capface=capface, scheduler=scheduler, image_encoder=image_encoder,
                            feature_extractor=feature_extractor)
    pipe.save_config(out_dir)  # model_index.json, as save_pretrained writes it
    if identity is not None:
        shutil.copytree(identity, out_dir / "identity", dirs_exist_ok=True)
    log(f"wrote {out_dir}")
    return ConversionResult(out_dir, reports, trained_betas)


__all__ = ["convert_caphuman", "load_state_dict", "KeyReport", "ConversionResult", "CapHumanError"]
