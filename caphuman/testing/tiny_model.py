"""A complete, randomly initialised, tiny CapHuman in every layout the loaders accept.

``python -m caphuman.testing.tiny_model --out DIR [--seed N]`` writes::

    DIR/                       diffusers folder: CapHumanPipeline.from_pretrained(DIR) loads it
        model_index.json, vae/, text_encoder/, tokenizer/, unet/, capface/, scheduler/,
        image_encoder/, feature_extractor/
    DIR/identity/              tiny FaceNet / face-parser stand-ins (identity.json + safetensors)
    DIR/original/              the same weights in the ORIGINAL layout, for ``caphuman convert``:
        caphuman.ckpt          Lightning-style {"state_dict": ...}: control_model.* (incl. mask_predict.0),
                               id_linear, img_linear, control_cond_stage_model.transformer.*, schedule
                               buffers, and DECOY model.diffusion_model/first_stage_model/cond_stage_model
                               copies (a backbone must override them, as in the original)
        backbone.safetensors   SD1.5-style single file: UNet + text encoder (+ a decoy VAE)
        vae.safetensors        un-prefixed VAE (like vae-ft-mse-840000-ema-pruned)
        cldm_tiny.yaml         model config in the original cldm_v15.yaml format
        clip/                  transformers CLIP folder (config, tokenizer, image processor), no weights

Sizes are chosen so every GroupNorm has 32 groups, as ldm hard-codes, and the VAE has factor 8.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch import nn

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


# ---------------------------------------------------------------------------- identity stand-ins
class TinyRecognizer(nn.Module):
    """FaceNet stand-in: (B, 3, 160, 160) standardised crop -> (B, 512) L2-normalised (same head as
    InceptionResnetV1: pool -> Linear(no bias) -> BatchNorm1d(eps 1e-3) -> L2)."""

    def __init__(self, width: int = 8, embedding_dim: int = 512):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=4, padding=1), nn.SiLU(),
            nn.Conv2d(width, 2 * width, 3, stride=4, padding=1), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )
        self.last_linear = nn.Linear(2 * width, embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_dim, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(self.last_bn(self.last_linear(self.features(x))), dim=1)


class TinyFaceParser(nn.Module):
    """BiSeNet stand-in: (B, 3, H, W) ImageNet-normalised -> (logits (B, 19, H, W),) like BiSeNet's first head."""

    def __init__(self, width: int = 8, num_classes: int = 19):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, width, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(width, width, 3, padding=1), nn.SiLU(),
            nn.Conv2d(width, num_classes, 1),
        )

    def forward(self, x: torch.Tensor):
        logits = nn.functional.interpolate(self.net(x), size=x.shape[-2:], mode="bilinear", align_corners=True)
        return (logits,)


from caphuman.diffusion.sizes import ModelSizes  # noqa: E402  (re-exported for tests)


# ---------------------------------------------------------------------------- tokenizer
_WORDS = ["a", "photo", "of", "person", "portrait", "man", "woman", "smiling", "the", "in", "blurry", "bad"]


def _byte_alphabet() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (printable latin-1 bytes map to
    themselves, the others to code points from 256 upward, in byte order)."""
    printable = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    extra = 0
    out = []
    for b in range(256):
        if b in printable:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def build_tokenizer():
    """A byte-level BPE CLIPTokenizer with a small vocabulary built here (no download)."""
    from transformers import CLIPTokenizer
    chars = _byte_alphabet()
    vocab_list = chars + [c + "</w>" for c in chars]
    merges = []
    for word in _WORDS:
        toks = list(word[:-1]) + [word[-1] + "</w>"]
        while len(toks) > 1:
            pair = (toks[0], toks[1])
            merged = toks[0] + toks[1]
            if pair not in merges:
                merges.append(pair)
            if merged not in vocab_list:
                vocab_list.append(merged)
            toks = [merged] + toks[2:]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(vocab_list))}
    tok = CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=77)
    return tok


def _feature_extractor(size: int):
    from caphuman.face.clip_image import pil_processor_class

    return pil_processor_class()(do_resize=True, size={"shortest_edge": size}, resample=3, do_center_crop=True,
                              crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255,
                              do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True)


# ---------------------------------------------------------------------------- builders
def build_components(sizes: ModelSizes | None = None, seed: int = 0, tokenizer=None) -> dict:
    """Random-weight pipeline components (fp32, eval) for ``CapHumanPipeline(**components)``."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModel

    from caphuman.diffusion.capface import CapFaceModel
    from caphuman.diffusion.schedulers import make_scheduler

    sizes = sizes or ModelSizes.tiny()
    tokenizer = tokenizer or build_tokenizer()
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**sizes.unet_config())
    capface = CapFaceModel(**sizes.capface_config())
    _randomise_zero_layers(capface)
    vae = AutoencoderKL(**sizes.vae_config())
    text_cfg = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                              eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                              projection_dim=sizes.text["hidden_size"], **sizes.text)
    text_encoder = CLIPTextModel(text_cfg)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(projection_dim=sizes.vision["hidden_size"], **sizes.vision))
    comps = dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, capface=capface,
                 scheduler=make_scheduler("ddim"), image_encoder=image_encoder,
                 feature_extractor=_feature_extractor(sizes.vision["image_size"]))
    for m in comps.values():
        if isinstance(m, nn.Module):
            m.eval()
    return comps


def _randomise_zero_layers(capface) -> None:
    """Zero-initialised layers (zero convs, hint conv_out) get small random values so tests see real residuals;
    the mask head bias is set so that roughly half the cells pass the 0.5 gate."""
    cn = capface.controlnet
    with torch.no_grad():
        for m in [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            nn.init.normal_(m.weight, std=0.05)
            nn.init.normal_(m.bias, std=0.05)


def build_identity_encoder(seed: int = 0):
    from caphuman.diffusion.identity import IdentityEncoder

    torch.manual_seed(seed + 1)
    rec, parser = TinyRecognizer(), TinyFaceParser()
    with torch.no_grad():  # non-trivial BatchNorm statistics
        rec.last_bn.running_mean.normal_(0, 0.1)
        rec.last_bn.running_var.uniform_(0.5, 1.5)
    return IdentityEncoder(rec, parser)


IDENTITY_SPEC = {
    "recognizer": {"class": "tiny-recognizer", "kwargs": {"width": 8}},
    "parser": {"class": "tiny-face-parser", "kwargs": {"width": 8}},
}


def _ddpm_buffers() -> dict:
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    ac = torch.cumprod(1 - betas, 0)
    prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
    post = betas * (1 - prev) / (1 - ac)
    f = lambda x: x.float()  # noqa: E731
    return {"betas": f(betas), "alphas_cumprod": f(ac), "alphas_cumprod_prev": f(prev),
            "sqrt_alphas_cumprod": f(ac.sqrt()), "sqrt_one_minus_alphas_cumprod": f((1 - ac).sqrt()),
            "log_one_minus_alphas_cumprod": f((1 - ac).log()), "sqrt_recip_alphas_cumprod": f((1 / ac).sqrt()),
            "sqrt_recipm1_alphas_cumprod": f((1 / ac - 1).sqrt()), "posterior_variance": f(post),
            "posterior_log_variance_clipped": f(post.clamp(min=1e-20).log()),
            "posterior_mean_coef1": f(betas * prev.sqrt() / (1 - ac)),
            "posterior_mean_coef2": f((1 - prev) * (1 - betas).sqrt() / (1 - ac)), "logvar": torch.zeros(1000)}


def original_layout(comps: dict, decoys: dict) -> tuple[dict, dict, dict]:
    """(caphuman.ckpt state dict, backbone single-file dict, un-prefixed VAE dict) in ldm names."""
    from caphuman.testing.ldm_layout import controlnet_state_dict_to_ldm, unet_state_dict_to_ldm, vae_state_dict_to_ldm

    def prefixed(prefix, sd):
        return {prefix + k: v for k, v in sd.items()}

    def with_position_ids(prefix, model, tower):
        """transformers 4.24 names: ``{tower}.embeddings...`` plus the then-persistent position_ids."""
        sd = {f"{prefix}{tower}.{k}": v for k, v in model.state_dict().items() if not k.startswith(tower + ".")}
        sd.update({f"{prefix}{k}": v for k, v in model.state_dict().items() if k.startswith(tower + ".")})
        n = model.config.max_position_embeddings if tower == "text_model" else \
            (model.config.image_size // model.config.patch_size) ** 2 + 1
        sd[f"{prefix}{tower}.embeddings.position_ids"] = torch.arange(n)[None]
        return sd

    capface = comps["capface"]
    ckpt = prefixed("control_model.", controlnet_state_dict_to_ldm(capface.controlnet))
    ckpt["control_model.mask_predict.0.weight"] = capface.mask_head[0].weight
    ckpt["control_model.mask_predict.0.bias"] = capface.mask_head[0].bias
    ckpt.update(prefixed("id_linear.", capface.id_linear.state_dict()))
    ckpt.update(prefixed("img_linear.", capface.img_linear.state_dict()))
    ckpt.update(with_position_ids("control_cond_stage_model.transformer.", comps["image_encoder"], "vision_model"))
    ckpt.update(prefixed("model.diffusion_model.", unet_state_dict_to_ldm(decoys["unet"])))
    ckpt.update(prefixed("first_stage_model.", vae_state_dict_to_ldm(decoys["vae"])))
    ckpt.update(with_position_ids("cond_stage_model.transformer.", decoys["text_encoder"], "text_model"))
    ckpt.update(_ddpm_buffers())

    backbone = prefixed("model.diffusion_model.", unet_state_dict_to_ldm(comps["unet"]))
    backbone.update(prefixed("first_stage_model.", vae_state_dict_to_ldm(decoys["vae"])))
    text = with_position_ids("cond_stage_model.transformer.", comps["text_encoder"], "text_model")
    backbone.update({k: v for k, v in text.items() if not k.endswith("position_ids")})
    return ckpt, backbone, vae_state_dict_to_ldm(comps["vae"])


def write_tiny_model(out: str | Path, seed: int = 0, sizes: ModelSizes | None = None, original: bool = True,
                     dtype=None) -> Path:
    """Write the tiny model folder (see module docstring). Returns ``out``.

    ``original=False`` skips ``original/`` (the diffusers folder and ``identity/`` only); ``dtype``
    (e.g. ``torch.float16``) saves the pipeline's weights in that dtype (half the disk for SD1.5 sizes)."""
    from safetensors.torch import save_file
    from transformers import CLIPConfig

    from caphuman.diffusion.pipeline import CapHumanPipeline

    out = Path(out)
    sizes = sizes or ModelSizes.tiny()
    comps = build_components(sizes, seed)
    pipe = CapHumanPipeline(**comps)
    if dtype is not None:
        pipe.to(dtype=dtype)
    pipe.save_pretrained(out, safe_serialization=True)
    build_identity_encoder(seed).save(out / "identity", IDENTITY_SPEC)
    if not original:
        (out / "TINY_MODEL.json").write_text(json.dumps({"seed": seed, "random": True}, indent=2) + "\n")
        return out

    decoys = build_components(sizes, seed + 1000, tokenizer=comps["tokenizer"])
    ckpt, backbone, vae = original_layout(comps, decoys)
    orig = out / "original"
    orig.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": {k: v.detach().clone() for k, v in ckpt.items()}, "global_step": 0},
               orig / "caphuman.ckpt")
    save_file({k: v.detach().contiguous() for k, v in backbone.items()}, str(orig / "backbone.safetensors"))
    save_file({k: v.detach().contiguous() for k, v in vae.items()}, str(orig / "vae.safetensors"))
    (orig / "cldm_tiny.yaml").write_text(sizes.original_yaml())
    clip_dir = orig / "clip"
    CLIPConfig(text_config=comps["text_encoder"].config.to_dict(),
               vision_config=comps["image_encoder"].config.to_dict()).save_pretrained(clip_dir)
    comps["tokenizer"].save_pretrained(clip_dir)
    comps["feature_extractor"].save_pretrained(clip_dir)
    (out / "TINY_MODEL.json").write_text(json.dumps({"seed": seed, "random": True}, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m caphuman.testing.tiny_model", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="random seed of the weights (default 0)")
    args = p.parse_args(argv)
    print(write_tiny_model(args.out, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
