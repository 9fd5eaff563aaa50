"""StudioService: the one object the UI, the API and the tests call.

``analyze`` (photo -> frame + fitted state), ``preview`` (state -> preview + maps + hint, no GPU),
``glb`` (state -> mesh bytes) and ``generate`` (photo + state + parameters -> captioned images).
Thread-safe; holds no per-user data (the UI keeps that in ``gr.State``).
"""

from __future__ import annotations

import logging
import threading
import warnings
from pathlib import Path
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from caphuman.controls.state import HeadState
from caphuman.errors import CapHumanError, InputError
from caphuman.preview import HeadPreviewPipeline, PreviewResult
from caphuman.studio import reference as reference_mod
from caphuman.studio.environment import Environment, describe
from caphuman.studio.generation import (
    GeneratedImage,
    GenerationParams,
    Generator,
    installed_models,
)
from caphuman.studio.gpu import generation_seconds, gpu, on_zero_gpu, picklable
from caphuman.validation import check_int


def release_memory() -> None:
    """Give freed heap memory back to the system (glibc), where the photo-analysis module is."""
    try:
        from caphuman.face.intake import release_memory as trim
    except ImportError:
        return
    trim()

#: Live preview side (pixels).
PREVIEW_SIZE = 512


@dataclass
class Checked:
    """A value plus the warnings raised while validating it (shown as ``gr.Warning``)."""

    value: object
    warnings: list[str] = field(default_factory=list)


def validated_state(state: HeadState | dict | str) -> Checked:
    """HeadState / dict / JSON -> validated HeadState; clamping warnings collected, NaN refused."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if isinstance(state, str):
            if not state.strip():
                out = HeadState().validated()
            else:
                out = HeadState.from_json(state)
        elif isinstance(state, dict):
            out = HeadState.from_dict(state)
        elif isinstance(state, HeadState):
            out = state.validated()
        else:
            raise InputError("head state must be a JSON object")
    return Checked(out, [str(w.message) for w in caught if issubclass(w.category, UserWarning)])


def _gpu_seconds(generator: Generator, reference_rgb, hint, params, on_step=None, requested=None, target=None) -> int:
    """ZeroGPU's dynamic duration for :func:`_generate_on_gpu` (same signature): steps x images."""
    return generation_seconds(params)


@gpu(duration=_gpu_seconds)
def _generate_on_gpu(generator: Generator, reference_rgb, hint, params, on_step=None, requested=None, target=None):
    """The generation GPU function (ZeroGPU attaches a GPU for its duration). Its arguments are
    pickled into ZeroGPU's worker: the generator travels as a reference (see ``Generator.__reduce__``)."""
    return generator.generate(reference_rgb, hint, params, on_step, requested=requested, target=target)


def _crossing(on_step):
    """``on_step`` when it can reach ZeroGPU's worker (it pickles), else None (no progress, no crash)."""
    if on_step is None or not on_zero_gpu() or picklable(on_step):
        return on_step
    logging.getLogger("caphuman.studio").warning(
        "progress callback %r does not pickle; ZeroGPU runs this generation without progress "
        "(use caphuman.studio.gpu.StepProgress)", on_step)
    return None


class StudioService:
    """head: ``auto`` | ``builtin`` | PATH; weights: diffusers CapHuman folder or None; device:
    ``auto`` | ``cpu`` | ``cuda``; compile: torch.compile the UNet and CapFace of every generator."""

    def __init__(self, head: str = "auto", weights: str | None = None, device: str = "auto", compile: bool = False):
        from caphuman.head.resolve import load_head

        from caphuman.studio import serving

        from caphuman.diffusion.acceleration import resolve_device

        self.device = resolve_device(device)
        self.compile = compile
        self._render_lock = threading.Lock()
        # Decoding a large upload is the memory-hungry step: at most this many at once; the rest wait.
        self.analysis_slots = serving.analysis_concurrency()
        self._analysis_gate = threading.BoundedSemaphore(self.analysis_slots)
        self._use(load_head(head))
        self.weights = weights
        self.models = installed_models(weights)
        self._extra: tuple[str, Generator] | None = None  # the last non-default base model used
        self.generator = Generator(weights, self.device, compile=self.compile) if weights else None
        self.generator_error: str | None = None
        if self.generator is not None:
            try:
                self.generator.check()
            except CapHumanError as exc:
                self.generator_error = str(exc)

    def use_weights(self, weights: str | Path) -> None:
        """Switch the default generation weights (e.g. once a background download finished)."""
        generator = Generator(weights, self.device, compile=self.compile)
        try:
            generator.check()
            error = None
        except CapHumanError as exc:
            error = str(exc)
        self.weights, self.models = str(weights), installed_models(weights)
        self.generator, self.generator_error = generator, error

    def fetch_weights(self, download=None) -> None:
        """Background start-up download of the public weights (Spaces): fetch, convert, then load.

        ``download``: ``download(target, log=...) -> converted folder or None``
        (:func:`caphuman.weights.provision.fetch_and_convert` by default).
        Never raises: the outcome is shown by the status banner and by Generate's message.
        """
        if download is None:
            from caphuman.weights.provision import fetch_and_convert as download
        self.generator_error = "the public weights are downloading in the background; try again in a few minutes"
        self.generator = None
        try:
            out = download("all", log=lambda msg: logging.getLogger("caphuman.studio").info("%s", msg))
        except CapHumanError as exc:
            self.generator_error = f"start-up download failed: {exc}"
            return
        except Exception as exc:  # noqa: BLE001 - a background thread must report, not die silently
            self.generator_error = f"start-up download failed: {exc.__class__.__name__}: {exc}"
            return
        if out is None:
            self.generator_error = "start-up download finished without a converted model (see the log)"
            return
        self.use_weights(out)
        self.warm_up()

    # ------------------------------------------------------------------ status
    def environment(self) -> Environment:
        return describe(self.device, self.head_description, self.head_kind, self.weights,
                        self.generator_error, reference_mod.analysis_available())

    def warm_up(self, load_generator: bool = True) -> None:
        """Compile the renderer (numba) and load the generation models (CPU first, as ZeroGPU expects)."""
        self.preview(HeadState(), None, 64)
        if load_generator and self.generator is not None and not self.generator_error:
            try:
                self.generator.load()
            except CapHumanError as exc:
                self.generator_error = str(exc)
            except Exception as exc:  # noqa: BLE001 - reported in the banner, never a crash
                self.generator_error = f"could not load {self.weights}: {exc.__class__.__name__}: {exc}"

    # ------------------------------------------------------------------ head model
    def _use(self, resolved) -> None:
        """Switch every head-dependent part at once (under the render lock)."""
        pipeline = HeadPreviewPipeline(resolved.data)
        target = reference_mod.fit_target(resolved.data, resolved.kind)
        with self._render_lock:
            self.head_kind, self.head_description = resolved.kind, resolved.description
            self.pipeline, self.fit_target = pipeline, target
            self.num_expression = pipeline.model.num_expression

    def install_flame(self, path) -> list[str]:
        """Install an uploaded FLAME2023Open.zip / FLAME pickle and switch the live head to it.
        Returns notes for the user; raises InputError when uploads are off or the file is refused."""
        from caphuman.head.flame_install import install_flame
        from caphuman.head.resolve import forget_loaded_heads, load_head
        from caphuman.studio import serving

        if not serving.flame_upload_enabled():
            raise InputError("installing FLAME by upload is off on this Space; its owner can set "
                             f"{serving.FLAME_UPLOAD_ENV}=1, or provide it with the CAPHUMAN_FLAME_DIR / "
                             "CAPHUMAN_PRIVATE_REPO secrets")
        if path is None:
            raise InputError("choose FLAME2023Open.zip (or flame2023_Open.pkl / generic_model.pkl) to upload")
        result = install_flame(path, log=logging.getLogger("caphuman.studio").info)
        forget_loaded_heads()
        resolved = load_head("auto")
        if resolved.kind != "flame":
            raise InputError(f"{result.release} was installed, but the head cannot switch yet: {result.notes[-1]}")
        self._use(resolved)
        from caphuman.errors import without_paths

        return [without_paths(n) for n in result.notes]  # shown to the user: no server paths

    # ------------------------------------------------------------------ analysis
    def analyze(self, source, size: int = PREVIEW_SIZE) -> reference_mod.Reference:
        """Decode + detect + fit a photo (at most ``analysis_slots`` at once; others wait). The
        memory the analysis freed is handed back to the system afterwards."""
        try:
            with self._analysis_gate:
                return reference_mod.analyze(source, size, self.fit_target)
        finally:
            release_memory()

    def backdrop(self, source, size: int = PREVIEW_SIZE) -> np.ndarray:
        """A photo decoded (under the same gate as :meth:`analyze`) to its centre square."""
        with self._analysis_gate:
            return reference_mod.centre_square(reference_mod.load_photo(source), size)

    def transfer_from(self, source, current: HeadState, modes) -> tuple[HeadState, list[str]]:
        """Fit the pose-reference photo and copy the chosen ``modes`` onto ``current``."""
        from caphuman.studio.controls import transfer

        if not modes:
            raise InputError("tick at least one of position / pose / expression / lighting")
        ref = self.analyze(source)
        return transfer(current, ref.state, modes), ref.warnings

    # ------------------------------------------------------------------ preview
    def preview(self, state: HeadState, frame: np.ndarray | None = None, size: int = PREVIEW_SIZE,
                landmarks: bool = False, projection=None) -> PreviewResult:
        """Render a validated state over ``frame`` (uint8 square, resized to ``size``).

        ``projection`` (:meth:`photo_projection` of ``frame``): the preview shows the person's face
        on the head, as the live head does; the hint stays exactly the same."""
        size = check_int("preview size", size, 64, 1024)
        backdrop = None if frame is None else reference_mod.resize_frame(frame, int(size))
        texture = None
        if projection is not None and frame is not None:
            from caphuman.render.photo_texture import FaceTexture

            texture = FaceTexture.from_projection(frame, projection)
        with self._render_lock:
            return self.pipeline.render(state, int(size), backdrop=backdrop, draw_landmarks=landmarks,
                                        validate=False, texture=texture)

    def photo_projection(self, state: HeadState, frame: np.ndarray):
        """The reference photo projected onto the head fitted to it (the live head's face texture)."""
        from caphuman.studio.live import photo_projection

        with self._render_lock:
            return photo_projection(self.pipeline, state, frame)

    def glb(self, state: HeadState) -> bytes:
        with self._render_lock:
            return self.pipeline.export_glb(state)

    # ------------------------------------------------------------------ generation
    def generate(self, reference_rgb: np.ndarray | None, state: HeadState, params: GenerationParams,
                 on_step: Callable[[int, int], None] | None = None) -> tuple[list[GeneratedImage], GenerationParams]:
        """Returns the images and the parameters actually used (the drawn seed included)."""
        from caphuman.errors import MissingWeightsError
        from caphuman.studio.generation import WEIGHTS_HINT

        params = params.validated()
        if reference_rgb is None:
            raise InputError("upload a reference photo first")
        generator = self._generator_for(params.model)
        if generator is None:
            raise MissingWeightsError(self.generator_error or "Generate needs model weights: " + WEIGHTS_HINT)
        if generator is self.generator and self.generator_error:
            raise MissingWeightsError(self.generator_error)
        with self._render_lock:
            hint = self.pipeline.render(state, params.resolution, validate=False).hint
        return _generate_on_gpu(generator, reference_rgb, hint, params, _crossing(on_step), state,
                                self.fit_target), params

    def _generator_for(self, model: str) -> Generator | None:
        """The default generator, or one for another installed base model (at most one extra kept
        loaded, so switching styles does not pile up models in memory)."""
        if not model or (self.weights is not None and self.models.get(model) == Path(self.weights)):
            return self.generator
        if model not in self.models:
            raise InputError(f"unknown base model {model!r}; installed: {', '.join(self.models) or 'none'}")
        if self._extra is None or self._extra[0] != model:
            gen = Generator(self.models[model], self.device, compile=self.compile)
            gen.check()
            self._extra = (model, gen)
        return self._extra[1]
