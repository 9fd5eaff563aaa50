"""The named API endpoints ``/analyze``, ``/preview`` and ``/generate`` (stateless, for
``gradio_client``), built on hidden components so Gradio handles uploads and file results.
Numbers are checked by the shared rules (:mod:`caphuman.validation`): a bad value is an error that
names the field and its range; head controls out of range are clamped with a warning.

    /analyze(photo: file) -> (frame: image, head_state: str JSON, report: str)
    /preview(head_state: str JSON, backdrop: file | None, size: int 64..1024, return_hint: bool = False)
        -> (preview: image, normals: image, albedo: image, shading: image (JPEG files),
            hint: file .npy (9, H, W) float16 when return_hint, else None)
    /generate(photo: file, head_state: str JSON, prompt: str, negative_prompt: str,
              seed: int (-1 random, else 0..4294967295), steps: int 1..150, guidance: float 0..30,
              strength: float 0..2, tau: int 0..1000, num_images: int 1..8, resolution: int (multiple of 64,
              64..1024), scheduler: "ddim" | "dpmpp" | "lcm" (the fast preset: LCM-LoRA; use steps 4, guidance 1))
        -> (gallery: list of (image, caption "seed S · pose asked yaw Y pitch P roll R · estimated yaw ...
            (or: pose not estimated (reason)) · identity X (recogniser) (or: identity n/a (reason))"), seed: int used)
"""

from __future__ import annotations

import logging

import gradio as gr
import numpy as np

from caphuman.studio import serving
from caphuman.studio.generation import SCHEDULERS, GenerationParams
from caphuman.studio.service import StudioService, validated_state
from caphuman.errors import without_paths
from caphuman.validation import check_int
from demo import files
from demo.handlers import _int, user_errors, warn


def api_number(**kwargs) -> gr.Number:
    """A number input of the API that hands the handler the value exactly as the client sent it.

    ``gr.Number`` would round 2.5 to 2, turn ``true`` into 1, and fail on ``"abc"``, NaN or
    Infinity with Gradio's generic message; the handler's shared validation
    (:mod:`caphuman.validation`) instead names the field and its range. (The instance's
    ``preprocess`` is replaced: a subclass would make Gradio write a ``.pyi`` next to this file.)"""
    number = gr.Number(**kwargs)
    number.preprocess = lambda payload: payload
    return number


def guard_inputs(blocks: gr.Blocks) -> None:
    """Requests Gradio cannot turn into handler arguments (a raw HTTP body with too few values, an
    upload a component cannot read) become one clear error and one log line, not a message-less
    error event and a traceback: ``blocks.preprocess_data`` is wrapped for every event."""
    original = blocks.preprocess_data
    log = logging.getLogger("caphuman.studio")

    async def preprocess_data(block_fn, inputs, state, explicit_call=False):
        name = f"/{block_fn.api_name}" if isinstance(getattr(block_fn, "api_name", None), str) else "this event"
        wanted = list(block_fn.inputs)
        if inputs is None or len(inputs) < len(wanted):
            labels = ", ".join(str(getattr(b, "label", None) or type(b).__name__) for b in wanted)
            got = 0 if inputs is None else len(inputs)
            log.warning("refused %s: %d input value(s), %d needed", name, got, len(wanted))
            raise gr.Error(f"{name} takes {len(wanted)} input values ({labels}); the request sent {got}",
                           print_exception=False)
        try:
            return await original(block_fn, inputs, state, explicit_call)
        except gr.Error:
            raise
        except Exception as exc:  # noqa: BLE001 - an input Gradio could not read: the user's, not a bug
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            log.warning("refused %s: an input could not be read (%s: %s)", name, type(exc).__name__, first)
            raise gr.Error(f"{name}: an input could not be read ({type(exc).__name__}: {without_paths(first)})",
                           print_exception=False) from None

    blocks.preprocess_data = preprocess_data


def add_api(service: StudioService) -> None:
    """Call inside ``gr.Blocks``: adds the hidden components and the three endpoints (and guards
    every event's input decoding, :func:`guard_inputs`)."""
    root = gr.context.Context.root_block
    if root is not None:
        guard_inputs(root)

    @user_errors
    def analyze(photo):
        """Analyse a reference photo: the square frame, the fitted head state (JSON) and a report."""
        ref = service.analyze(photo)
        for w in ref.warnings:
            warn(w)
        return files.jpeg(ref.frame, "frame"), ref.state.to_json(), ref.report()

    @user_errors
    def preview(head_state, backdrop, size, return_hint=False):
        """Render a head state (JSON) over an optional backdrop (e.g. /analyze's frame). The four
        images are JPEGs; the exact condition maps come as the hint, only when ``return_hint``."""
        size = 512 if size is None else check_int("size", size, 64, 1024)  # before decoding the backdrop
        checked = validated_state(head_state or "")
        for w in checked.warnings:
            warn(w)
        frame = None
        if backdrop is not None:
            frame = service.backdrop(backdrop, 512)
        result = service.preview(checked.value, frame, size)
        m = result.maps
        # About 100 KB per call at 512^2 (JPEG, written once); the hint is 4.7 MB more (float16).
        images = [files.jpeg(result.preview, "preview", 90)] + [files.jpeg(m[k], k, 90)
                                                                 for k in ("normals", "albedo", "shading")]
        hint = files.npy(result.hint, "hint", dtype=np.float16) if bool(return_hint) else None
        return (*images, hint)

    @user_errors
    def generate(photo, head_state, prompt, negative_prompt, seed, steps, guidance, strength, tau,
                 num_images, resolution, scheduler, lora="none", lora_scale=1.0, model="default",
                 progress=gr.Progress()):
        """Generate portraits of the reference person posed as ``head_state``."""
        checked = validated_state(head_state or "")
        for w in checked.warnings:
            warn(w)
        params = GenerationParams(prompt=prompt, negative_prompt=negative_prompt or "", seed=_int(seed),
                                  steps=_int(steps), guidance=guidance, strength=strength, tau=_int(tau),
                                  num_images=_int(num_images), resolution=_int(resolution), scheduler=scheduler,
                                  lora=lora, lora_scale=lora_scale, model=model)
        params = params.validated()  # reject bad values before decoding the photo
        ref = service.analyze(photo)
        images, used = service.generate(ref.photo, checked.value, params,
                                        on_step=lambda i, n: progress((i, n), desc="denoising", unit="steps"))
        return [(files.png(g.image, f"seed{g.seed}"), g.caption) for g in images], used.seed

    with gr.Column(visible=False, elem_id="api-components"):
        a_photo = gr.File(label="photo", type="filepath")
        a_frame = gr.Image(label="frame", type="filepath")
        a_state = gr.Textbox(label="head_state")
        a_report = gr.Textbox(label="report")
        a_backdrop = gr.File(label="backdrop", type="filepath")
        a_size = api_number(label="size", value=512, precision=0)
        a_prev = [gr.Image(label=n, type="filepath") for n in ("preview", "normals", "albedo", "shading")]
        a_return_hint = gr.Checkbox(label="return_hint", value=False)
        a_hint = gr.File(label="hint")
        g_in = [gr.Textbox(label="prompt"), gr.Textbox(label="negative_prompt"),
                api_number(label="seed", value=-1, precision=0), api_number(label="steps", value=20, precision=0),
                api_number(label="guidance", value=7.0), api_number(label="strength", value=1.0),
                api_number(label="tau", value=0, precision=0), api_number(label="num_images", value=1, precision=0),
                api_number(label="resolution", value=512, precision=0),
                gr.Dropdown(label="scheduler", choices=list(SCHEDULERS), value="ddim"),
                gr.Textbox(label="lora", value="none"), api_number(label="lora_scale", value=1.0),
                gr.Textbox(label="model", value="default")]
        g_gallery = gr.Gallery(label="images")
        g_seed = gr.Number(label="seed", precision=0)
        b1, b2, b3 = gr.Button(visible=False), gr.Button(visible=False), gr.Button(visible=False)

    b1.click(analyze, [a_photo], [a_frame, a_state, a_report], api_name="analyze",
             concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview")
    b2.click(preview, [a_state, a_backdrop, a_size, a_return_hint], [*a_prev, a_hint], api_name="preview",
             concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview")
    b3.click(generate, [a_photo, a_state, *g_in], [g_gallery, g_seed], api_name="generate",
             concurrency_limit=serving.GENERATE_CONCURRENCY, concurrency_id="gpu")
