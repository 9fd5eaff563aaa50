"""Original ``caphuman.ckpt`` + an SD1.5-family backbone -> a diffusers folder ``CapHumanPipeline`` loads.

Weight precedence follows the original's loading order (reference §1.2, §5.3):

* CapFace trunk, mask head, ``id_linear``, ``img_linear``: ``caphuman.ckpt``;
* UNet: the backbone; VAE: ``--vae`` if given, else the backbone;
* text encoder: the backbone if it has ``cond_stage_model.transformer.text_model.*``, else ``caphuman.ckpt``;
* CLIP vision: ``caphuman.ckpt``'s ``control_cond_stage_model.transformer.*`` if present, else the CLIP repo;
* tokenizer, image processor (and model configs of the CLIP towers): the CLIP repo/folder.

The diffusers converters of ``diffusers.loaders.single_file_utils`` do the renaming; this module adds
the mask head, the projections, the 9-channel hint config, the CLIP-vision copy and a key report in
which every source key is accounted for. Pickles are loaded with ``weights_only=True``, or, when that
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
    import torch

    from caphuman.weights.safe_load import load_checkpoint_state_dict

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(f"file not found: {path}")
    if path.suffix != ".safetensors":
        try:
            return load_checkpoint_state_dict(path, log=log)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{exc}; {SAFE_ALTERNATIVES}") from None
    from safetensors.torch import load_file

    sd = load_file(str(path))
    return {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}


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


# ---------------------------------------------------------------------------- model builders
def _load_strict(model_cls, config: dict, state_dict: dict, what: str):
    """Build ``model_cls(**config)`` without initialising weights and load ``state_dict`` strictly."""
    from accelerate import init_empty_weights

    missing = sorted(k for k, v in state_dict.items() if v is None)
    if missing:
        raise InputError(f"{what}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    with init_empty_weights():
        model = model_cls(**config)
    expected = set(model.state_dict())
    got = set(state_dict)
    if expected != got:
        raise InputError(f"{what}: key mismatch, missing {sorted(expected - got)[:5]} "
                         f"unexpected {sorted(got - expected)[:5]} (is --original-config right?)")
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()},
                              strict=True, assign=True)
    except RuntimeError as exc:
        raise InputError(f"{what}: {str(exc).splitlines()[0]} ... (shape mismatch; is --original-config right?)") \
            from None
    return model.eval()


def _clip_state_dict(model, sd: dict) -> dict:
    """Drop ``position_ids`` (non-persistent in current transformers) and match the model's own prefixing."""
    sd = {k: v for k, v in sd.items() if not k.endswith("embeddings.position_ids")}
    own = set(model.state_dict())
    for tower in ("text_model.", "vision_model."):
        if any(k.startswith(tower) for k in sd) and not any(k.startswith(tower) for k in own):
            sd = {k[len(tower):] if k.startswith(tower) else k: v for k, v in sd.items()}
    return sd


def _load_clip(model_cls, config, sd: dict, what: str):
    model = model_cls(config)
    sd = _clip_state_dict(model, sd)
    result = model.load_state_dict(sd, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise InputError(f"{what}: missing {result.missing_keys[:5]} unexpected {result.unexpected_keys[:5]}")
    return model.eval()


def _clip_source(clip: str | os.PathLike | None) -> str:
    if clip is not None:
        return str(clip)
    from caphuman.weights.registry import local_path

    local = local_path("clip")
    return str(local) if local.exists() else CLIP_REPO


def _clip_part(source: str, loader, subfolder: str):
    """Load from a transformers CLIP repo/folder, or from a diffusers folder's ``subfolder``."""
    if Path(source, subfolder).is_dir():
        return loader(source, subfolder=subfolder)
    return loader(source)


def _is_single_file(source: str) -> bool:
    return Path(source).is_file()


# ---------------------------------------------------------------------------- main entry
@dataclass
class ConversionResult:
    out_dir: Path
    reports: list[KeyReport]

    @property
    def complete(self) -> bool:
        return all(not r.unaccounted for r in self.reports)


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
    """Convert and save; returns the key reports. Raises ``CapHumanError`` subclasses on user errors."""
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
    from caphuman.face.clip_image import pil_processor_class

    warnings.filterwarnings("ignore", message=".*image_size.*deprecated", category=FutureWarning)
    cfg = load_original_config(original_config)
    clip_src = _clip_source(clip)
    backbone = str(backbone)

    # ---- caphuman.ckpt: CapFace + projections (+ CLIP vision, decoy copies of the SD parts)
    log(f"reading {caphuman_ckpt}")
    ck = load_state_dict(caphuman_ckpt, log=log)
    ck_report = KeyReport(Path(caphuman_ckpt).name, set(ck))
    ck_report.ignored.update({k: "DDPM schedule buffer" for k in ck if k in SCHEDULE_BUFFERS})
    ck_report.ignored.update({k: "position_ids buffer" for k in ck if k.endswith("embeddings.position_ids")})
    if f"{CONTROL_PREFIX}time_embed.0.weight" not in ck:
        raise InputError(f"{caphuman_ckpt} has no {CONTROL_PREFIX}* keys: not a CapHuman checkpoint")

    control = _Recorder({k[len(CONTROL_PREFIX):]: v for k, v in ck.items() if k.startswith(CONTROL_PREFIX)})
    capface_cfg = capface_config_from_original(cfg, ck)
    trunk = convert_controlnet_checkpoint(control, capface_cfg)
    read = set(control.read)
    extra = {"mask_head.0.weight": control.get("mask_predict.0.weight"),
             "mask_head.0.bias": control.get("mask_predict.0.bias")}
    read |= {"mask_predict.0.weight", "mask_predict.0.bias"}
    for name in ("id_linear", "img_linear"):
        for p in ("weight", "bias"):
            extra[f"{name}.{p}"] = ck.get(f"{name}.{p}")
    capface_sd = {f"controlnet.{k}": v for k, v in trunk.items()} | extra
    id_w, img_w = extra["id_linear.weight"], extra["img_linear.weight"]
    if id_w is None or img_w is None:
        raise InputError(f"{caphuman_ckpt} lacks id_linear/img_linear")
    capface_cfg.update(id_embedding_dim=id_w.shape[1], image_embedding_dim=img_w.shape[1])
    ck_report.consumed |= {CONTROL_PREFIX + k for k in read if k in control}
    ck_report.mark_consumed({k: v for k, v in ck.items() if k.startswith(("id_linear.", "img_linear."))},
                            [capface_sd])
    strict_unused = sorted(k for k in ck_report.unaccounted if k.startswith(STRICT_PREFIXES))
    if strict_unused:
        raise InputError(f"unexpected CapFace keys in {Path(caphuman_ckpt).name} ({len(strict_unused)}), "
                         f"e.g. {strict_unused[:5]}: not the expected architecture")
    capface = _load_strict(CapFaceModel, capface_cfg, capface_sd, "CapFace")

    # ---- backbone: UNet (+ VAE, text encoder)
    reports = [ck_report]
    if _is_single_file(backbone):
        log(f"reading {backbone}")
        bb = load_state_dict(backbone, log=log)
        bb_report = KeyReport(Path(backbone).name, set(bb))
        bb_report.ignored.update({k: "position_ids buffer" for k in bb if k.endswith("embeddings.position_ids")})
        bb_report.ignored.update({k: "DDPM schedule buffer" for k in bb if k in SCHEDULE_BUFFERS})
        bb_report.ignored.update({k: "EMA copy (not used)" for k in bb if k.startswith("model_ema.")})
        reports.append(bb_report)
        unet_cfg = create_unet_diffusers_config_from_ldm(cfg, bb, image_size=512)
        unet_sd = convert_ldm_unet_checkpoint(bb, unet_cfg)
        unet = _load_strict(UNet2DConditionModel, unet_cfg, unet_sd, "UNet")
        bb_report.mark_consumed({k: v for k, v in bb.items() if k.startswith(UNET_PREFIX)}, [unet_sd])
        ck_report.supersede(UNET_PREFIX, f"backbone {Path(backbone).name}")
        text_sd = {k: v for k, v in bb.items() if k.startswith(TEXT_PREFIX + "text_model.")}
        text_from = bb_report if text_sd else ck_report
        text_src = bb if text_sd else ck
    else:
        log(f"loading diffusers backbone {backbone}")
        bb = None
        try:
            unet = UNet2DConditionModel.from_pretrained(backbone, subfolder="unet").eval()
        except (OSError, ValueError) as exc:
            raise MissingWeightsError(f"cannot load a backbone from {backbone!r}: {str(exc).splitlines()[0]}") \
                from None
        ck_report.supersede(UNET_PREFIX, f"backbone {backbone}")
        text_from, text_src = None, None

    # ---- VAE: --vae > backbone
    vae_cfg = create_vae_diffusers_config_from_ldm(cfg, ck, image_size=512)
    if vae is not None and _is_single_file(str(vae)):
        v_sd_src = load_state_dict(vae, log=log)
        v_report = KeyReport(Path(vae).name, set(v_sd_src))
        reports.append(v_report)
        vae_sd = convert_ldm_vae_checkpoint(v_sd_src, vae_cfg)
        v_report.mark_consumed(v_sd_src, [vae_sd])
        v_report.ignored.update({k: "EMA copy (not used)" for k in v_sd_src if k.startswith("model_ema.")})
        vae_model = _load_strict(AutoencoderKL, vae_cfg, vae_sd, "VAE")
        vae_by = f"--vae {Path(vae).name}"
    elif vae is not None:
        vae_model = AutoencoderKL.from_pretrained(str(vae)).eval()
        vae_by = f"--vae {vae}"
    elif bb is not None:
        vae_sd = convert_ldm_vae_checkpoint({k: v for k, v in bb.items() if k.startswith(VAE_PREFIX)}, vae_cfg)
        vae_model = _load_strict(AutoencoderKL, vae_cfg, vae_sd, "VAE")
        reports[1].mark_consumed({k: v for k, v in bb.items() if k.startswith(VAE_PREFIX)}, [vae_sd])
        vae_by = f"backbone {Path(backbone).name}"
    else:
        vae_model = AutoencoderKL.from_pretrained(backbone, subfolder="vae").eval()
        vae_by = f"backbone {backbone}"
    ck_report.supersede(VAE_PREFIX, vae_by)
    if bb is not None and vae is not None:
        reports[1].supersede(VAE_PREFIX, vae_by)

    # ---- text encoder + tokenizer
    if text_src is not None:
        text_cfg = _clip_part(clip_src, CLIPTextConfig.from_pretrained, "text_encoder")
        sd = convert_ldm_clip_checkpoint({k: v for k, v in text_src.items() if k.startswith(TEXT_PREFIX)})
        text_encoder = _load_clip(CLIPTextModel, text_cfg, sd, "text encoder")
        text_from.consumed |= {TEXT_PREFIX + k for k in sd if not k.endswith("position_ids")}
        if text_from is not ck_report:
            ck_report.supersede(TEXT_PREFIX, f"backbone {Path(backbone).name}")
    else:
        text_encoder = CLIPTextModel.from_pretrained(backbone, subfolder="text_encoder").eval()
        ck_report.supersede(TEXT_PREFIX, f"backbone {backbone}")
    tokenizer = _clip_part(clip_src, CLIPTokenizer.from_pretrained, "tokenizer")

    # ---- CLIP vision tower + image processor
    vision_sd = {k[len(VISION_PREFIX):]: v for k, v in ck.items() if k.startswith(VISION_PREFIX)}
    if vision_sd:
        vision_cfg = _clip_part(clip_src, CLIPVisionConfig.from_pretrained, "image_encoder")
        image_encoder = _load_clip(CLIPVisionModel, vision_cfg, vision_sd, "CLIP vision")
        ck_report.consumed |= {VISION_PREFIX + k for k in vision_sd if not k.endswith("position_ids")}
    else:
        log(f"{Path(caphuman_ckpt).name} has no CLIP-vision copy; using {clip_src}")
        image_encoder = _clip_part(clip_src, CLIPVisionModel.from_pretrained, "image_encoder").eval()
    # the PIL processor explicitly (transformers 5 would pick the torchvision one when torchvision is installed)
    feature_extractor = _clip_part(clip_src, pil_processor_class().from_pretrained, "feature_extractor")

    # ---- report, then save
    for r in reports:
        log(r.format())
    pipe = CapHumanPipeline(vae=vae_model, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                            capface=capface, scheduler=make_scheduler("ddim"), image_encoder=image_encoder,
                            feature_extractor=feature_extractor)
    if half:
        pipe.to(torch.float16)
    out_dir = Path(out_dir)
    pipe.save_pretrained(out_dir, safe_serialization=True)
    if identity is not None:
        shutil.copytree(identity, out_dir / "identity", dirs_exist_ok=True)
    log(f"wrote {out_dir}")
    return ConversionResult(out_dir, reports)


__all__ = ["convert_caphuman", "load_state_dict", "KeyReport", "ConversionResult", "CapHumanError"]
