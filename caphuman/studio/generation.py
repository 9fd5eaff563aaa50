"""Generation adapter: validated parameters -> the diffusion backend -> captioned images.

Only this module touches :mod:`caphuman.diffusion`. Without the module or the weights it raises
:class:`MissingWeightsError` with the command that fixes it; the preview studio keeps working.
"""

from __future__ import annotations

from caphuman.studio import has_module
import itertools
import random
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from caphuman.validation import MAX_SEED  # noqa: F401 (re-exported: seeds are 0..2**32-1 everywhere)
from caphuman.validation import GENERATION_RULES, check_generation, check_prompt
from caphuman.errors import InputError, MissingWeightsError

SCHEDULERS = ("ddim", "dpmpp", "lcm")  # lcm = the fast preset (LCM-LoRA), see caphuman.diffusion.presets
RESOLUTIONS = (128, 256, 384, 512, 640, 768)
MAX_IMAGES = int(GENERATION_RULES["num_images"].hi)
#: How the studio (UI and API) names each generation parameter in its messages.
LABELS = {"seed": "seed", "steps": "steps", "guidance": "guidance", "strength": "CapFace strength", "tau": "tau",
          "num_images": "number of images", "resolution": "resolution", "lora_scale": "LoRA scale"}
TINY_MODEL_HINT = "python -m caphuman.testing.tiny_model --out /tmp/tiny && python app.py --weights /tmp/tiny"
WEIGHTS_HINT = ("run `python -m caphuman download all` (downloads and converts into checkpoints/caphuman-diffusers, "
                "found automatically) or pass --weights DIR (a folder made by `python -m caphuman convert`); "
                "to try the pipeline with a tiny random model: " + TINY_MODEL_HINT)


def installed_models(default: str | Path | None = None) -> dict[str, Path]:
    """Converted CapHuman folders to choose from: ``default`` (the ``--weights`` folder) first,
    then every folder in ``checkpoints/`` holding a ``model_index.json`` (e.g. one converted per
    SD1.5 backbone: ``python -m caphuman convert --backbone toon.safetensors --out checkpoints/toon``)."""
    from caphuman.weights.registry import checkpoints_root

    found: dict[str, Path] = {}
    if default is not None:
        found[Path(default).name] = Path(default)
    root = checkpoints_root()
    if root.is_dir():
        for d in sorted(root.iterdir()):
            if (d / "model_index.json").is_file() and d.resolve() not in {p.resolve() for p in found.values()}:
                found[d.name] = d
    return found


@dataclass
class GenerationParams:
    """prompt / negative_prompt: text; seed: -1 = random or 0..2**32-1; steps: 1..150; guidance: CFG scale 0..30;
    strength: CapFace residual scale 0..2; tau: DDPM timestep above which CapFace's identity
    context is off (0 = never); num_images: 1..8; resolution: output side in pixels (64..1024,
    multiple of 64); scheduler: ``ddim`` | ``dpmpp`` | ``lcm`` (the fast preset: LCM-LoRA, 1..50 steps,
    4 steps and guidance 1 recommended); lora: a file name from ``checkpoints/lora/``
    ("" = none) applied at ``lora_scale`` (0..2); model: a base-model name from
    :func:`installed_models` ("" = the studio's default weights). The ranges are
    :data:`caphuman.validation.GENERATION_RULES` (shared with the CLI); out of range is refused."""

    prompt: str
    negative_prompt: str = ""
    seed: int = -1
    steps: int = 20
    guidance: float = 7.0
    strength: float = 1.0
    tau: int = 0
    num_images: int = 1
    resolution: int = 512
    scheduler: str = "ddim"
    lora: str = ""
    lora_scale: float = 1.0
    model: str = ""

    def validated(self) -> "GenerationParams":
        prompt = check_prompt(self.prompt)
        negative = check_prompt(self.negative_prompt, "negative prompt", required=False)

        def num(name, v, *_range, **_kw):
            """One parameter through the shared rules (caphuman.validation.GENERATION_RULES)."""
            field = next((k for k, label in LABELS.items() if label == name), name)
            return check_generation(field, v, LABELS.get(field, name))

        seed = num("seed", self.seed)
        resolution = num("resolution", self.resolution)
        if self.scheduler not in SCHEDULERS:
            raise InputError(f"scheduler must be one of {', '.join(SCHEDULERS)}, got {self.scheduler!r}")
        from caphuman.diffusion import presets

        if presets.uses_fast_lora(self.scheduler):
            presets.check_steps(self.scheduler, num("steps", self.steps, 1, 150, integer=True))
            presets.require_fast_lora()
        lora = "" if self.lora in (None, "", "none") else str(self.lora)
        if lora:
            from caphuman.diffusion.lora import installed_loras

            if lora not in installed_loras():
                raise InputError(f"LoRA {lora!r} is not in checkpoints/lora/ (installed: "
                                 f"{', '.join(installed_loras()) or 'none'})")
        return GenerationParams(
            model="" if self.model in (None, "", "default") else str(self.model),
            lora=lora, lora_scale=num("LoRA scale", self.lora_scale),
            prompt=prompt, negative_prompt=negative,
            seed=random.randint(0, MAX_SEED) if seed == -1 else seed,
            steps=num("steps", self.steps),
            guidance=num("guidance", self.guidance),
            strength=num("CapFace strength", self.strength),
            tau=num("tau", self.tau),
            num_images=num("number of images", self.num_images),
            resolution=resolution, scheduler=self.scheduler,
        )


@dataclass
class GeneratedImage:
    """image: uint8 (H, W, 3); seed: the seed that reproduces it alone; check: pose asked vs
    estimated and identity similarity (:class:`caphuman.face.output_check.OutputCheck`), None
    without the photo-analysis module."""

    image: np.ndarray
    seed: int
    check: Any = None

    @property
    def caption(self) -> str:
        if self.check is None:
            return f"seed {self.seed} · identity n/a (photo analysis not installed)"
        return f"seed {self.seed} · {self.check.summary()}"


def backend_available() -> bool:
    return has_module("caphuman.diffusion") and (
        has_module("caphuman.diffusion.pipeline"))


#: Every Generator of this process by token: a Generator pickles as its token (ZeroGPU pickles the
#: GPU function's arguments into a worker forked from this process, which holds the same objects).
_LIVE: "weakref.WeakValueDictionary[int, Generator]" = weakref.WeakValueDictionary()
_TOKENS = itertools.count(1)


def _live_generator(token: int, weights: str) -> "Generator":
    """Unpickle a Generator: the one with ``token`` in this process (see :data:`_LIVE`)."""
    generator = _LIVE.get(token)
    if generator is None:
        raise MissingWeightsError(f"the model {weights} was loaded after the GPU worker started; "
                                  "restart the Space (or the studio) to use it")
    return generator


class Generator:
    """Loads the CapHuman pipeline + identity encoder from a weights folder once, on ``device``."""

    def __init__(self, weights: str | Path, device: str = "cpu", compile: bool = False):
        """``compile``: torch.compile the UNet and CapFace (CUDA; slow first generation, faster after);
        on ZeroGPU, where torch.compile is not supported, ahead-of-time compilation instead
        (:mod:`caphuman.studio.aot`)."""
        self.weights = Path(weights).expanduser()
        self.device = device
        self.compile = compile
        self._lock = threading.Lock()
        self._pipe = None
        self._identity = None
        self._identity_error = "no identity encoders"
        self._lora: str | None = None
        self.aot_report: dict | None = None
        self.token = next(_TOKENS)
        _LIVE[self.token] = self

    def __reduce__(self):
        return _live_generator, (self.token, str(self.weights))

    def check(self) -> None:
        """Raise :class:`MissingWeightsError` with the fix when anything needed is absent."""
        if not backend_available():
            raise MissingWeightsError("the diffusion backend (caphuman.diffusion) is not installed in this build")
        if not (self.weights / "model_index.json").is_file():
            raise MissingWeightsError(f"{self.weights} is not a CapHuman diffusers folder (no model_index.json); "
                                      + WEIGHTS_HINT)

    def load(self):
        """Load once (thread-safe); returns (pipeline, identity encoder or None)."""
        with self._lock:
            if self._pipe is None:
                self.check()
                from caphuman.diffusion.acceleration import Acceleration, configure_pipeline
                from caphuman.diffusion.loading import load_pipeline

                from caphuman.studio.gpu import on_zero_gpu, spaces_module

                aot = self.compile and on_zero_gpu() and spaces_module() is not None
                # fp16 on CUDA, fp32 on CPU; torch.compile unless ZeroGPU (ahead-of-time there)
                accel = Acceleration.for_device(self.device, compile=self.compile and not aot)
                pipe = load_pipeline(self.weights, accel.load_dtype())
                pipe.set_progress_bar_config(disable=True)
                pipe = configure_pipeline(pipe, accel)
                if aot:
                    from caphuman.studio.aot import aot_resolution, compile_pipeline, no_lora

                    self.aot_report = compile_pipeline(spaces_module(), pipe, resolution=aot_resolution(),
                                                       usable=no_lora(pipe))
                self._pipe = pipe
                from caphuman.conditioning import identity_encoder_for

                try:
                    self._identity = identity_encoder_for(self.weights, device=self.device)
                except MissingWeightsError as exc:
                    self._identity_error = str(exc)
            return self._pipe, self._identity

    def generate(self, reference_rgb: np.ndarray, hint: np.ndarray, params: GenerationParams,
                 on_step: Callable[[int, int], None] | None = None, requested=None,
                 target=None) -> list[GeneratedImage]:
        """reference_rgb: uint8 photo (H, W, 3); hint: (9, R, R) float32 at ``params.resolution``;
        requested: the HeadState the hint was rendered from and target: its head model (FitTarget
        or preview pipeline), for the pose check of each image (None: pose not checked)."""
        import torch
        from PIL import Image

        from caphuman.diffusion.schedulers import make_scheduler

        pipe, identity = self.load()
        if identity is None:
            raise MissingWeightsError(self._identity_error)
        ref = Image.fromarray(reference_rgb)
        ident = identity.encode_identity(ref)
        from caphuman.diffusion.lora import apply_fast_lora, apply_lora
        from caphuman.diffusion.presets import uses_fast_lora

        pipe.scheduler = make_scheduler(params.scheduler, like=pipe.scheduler)
        self._lora = apply_lora(pipe, params.lora, params.lora_scale, active=self._lora)
        apply_fast_lora(pipe, uses_fast_lora(params.scheduler))
        seeds = [(params.seed + i) % (MAX_SEED + 1) for i in range(params.num_images)]
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        steps = params.steps
        out = pipe(
            prompt=params.prompt, negative_prompt=params.negative_prompt, hint=hint,
            id_embedding=ident.id_embedding, face_image=ident.face_only_image,
            num_images=params.num_images, num_inference_steps=steps, guidance_scale=params.guidance,
            strength=params.strength, tau=params.tau, generator=gens, output_type="np",
            callback=(lambda i, t, lat: on_step(i + 1, steps)) if on_step else None,
        )
        images = np.asarray(out.images)
        checks = [None] * len(images)
        if has_module("caphuman.face.output_check"):
            from caphuman.face.output_check import OutputChecker

            checks = OutputChecker(requested, target, reference_rgb, identity).check_all(images)
        return [GeneratedImage(img, s, c) for img, s, c in zip(images, seeds, checks)]
