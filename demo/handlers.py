"""Event handlers: component values <-> :class:`StudioService` calls. Every user-facing problem
becomes ``gr.Error``/``gr.Warning``; anything else is logged and shown as a one-line error.
Messages shown name no server paths (:func:`caphuman.errors.without_paths`)."""

from __future__ import annotations

import functools
import logging
import warnings

import gradio as gr
import numpy as np

from caphuman.controls.state import HeadState
from caphuman.errors import CapHumanError, without_paths
from caphuman.studio.controls import SLIDERS, state_from_values, values_from_state
from caphuman.studio.generation import GenerationParams
from caphuman.studio.service import StudioService, validated_state
from demo import files
from demo.inline_image import inline_jpeg

log = logging.getLogger("caphuman.studio")
N = len(SLIDERS)
MAP_SIZE = 256  # condition-map thumbnails (pixels)


def user_errors(fn):
    """CapHumanError -> gr.Error(message); UserWarning -> gr.Warning; anything else -> logged + short gr.Error."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                result = fn(*args, **kwargs)
            except gr.Error:
                raise
            except CapHumanError as exc:
                raise gr.Error(without_paths(exc, _paths(args, kwargs)), print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
                log.exception("studio handler %s failed", fn.__name__)
                raise gr.Error(f"internal error ({exc.__class__.__name__}); details are in the server log",
                               print_exception=False) from None
        for w in caught:
            if issubclass(w.category, UserWarning):
                warn(str(w.message))
        return result

    return wrapper


def _paths(args, kwargs) -> list[str]:
    """The file paths a handler received (uploads), to take out of its messages."""
    import os

    return [v for v in (*args, *kwargs.values()) if isinstance(v, str) and os.path.isabs(v)]


def warn(message: str) -> None:
    """``gr.Warning`` without server paths."""
    gr.Warning(without_paths(message))


# ---------------------------------------------------------------------------- session
def new_session() -> dict:
    """Per-browser-tab state: frame/photo arrays, the fitted reference state and the base state
    the sliders apply on (both as JSON)."""
    return {"frame": None, "photo": None, "reference": HeadState().to_json(None), "base": HeadState().to_json(None)}


def _session(session) -> dict:
    return session if isinstance(session, dict) else new_session()


def current_state(session, values) -> HeadState:
    s = _session(session)
    return state_from_values(HeadState.from_json(s["base"]), values)


def _slider_updates(state: HeadState) -> list[float]:
    return values_from_state(state)


# ---------------------------------------------------------------------------- handlers
class Handlers:
    def __init__(self, service: StudioService):
        self.service = service

    # preview ------------------------------------------------------------------
    def _maps(self, result) -> list:
        step = max(1, result.preview.shape[0] // MAP_SIZE)
        return [inline_jpeg(result.maps[k][::step, ::step]) for k in ("normals", "albedo", "shading")]

    @user_errors
    def live_preview(self, session, *values):
        """Slider moved: preview + three condition maps, sent inline (JPEG data URLs): a slider
        move writes nothing to disk."""
        s = _session(session)
        state = current_state(s, values)
        result = self.service.preview(state, s["frame"])
        return [inline_jpeg(result.preview, 92), *self._maps(result)]

    @user_errors
    def commit(self, session, *values):
        """Slider released / state replaced: 3D viewer GLB and the preset JSON download."""
        state = current_state(session, values)
        glb = files.write_bytes(self.service.glb(state), "head", ".glb")
        preset = files.text(state.to_json() + "\n", "head_state", ".json")
        return glb, preset

    @user_errors
    def export(self, session, *values):
        """Hint (.npy, 9 x H x W float32) + GLB + state JSON for download."""
        state = current_state(session, values)
        result = self.service.preview(state, None)
        return [files.npy(result.hint, "hint"), files.write_bytes(self.service.glb(state), "head", ".glb"),
                files.text(state.to_json() + "\n", "head_state", ".json")]

    # reference ----------------------------------------------------------------
    @user_errors
    def upload_reference(self, session, photo):
        """New reference photo: analyse, keep frame + fitted state, move the sliders to it."""
        s = new_session()
        if photo is None:
            return [s, ""] + _slider_updates(HeadState())
        ref = self.service.analyze(photo)
        # The warnings go in the Analysis box (ref.report()) only: a stack of toasts would cover
        # the controls for seconds on every upload.
        s.update(frame=ref.frame, photo=ref.photo, reference=ref.state.to_json(None), base=ref.state.to_json(None))
        return [s, ref.report()] + _slider_updates(ref.state)

    @user_errors
    def install_flame(self, session, path):
        """Uploaded FLAME release: install it, switch the live head, re-fit the current photo on it."""
        notes = self.service.install_flame(path)
        s = dict(_session(session))
        sliders = [gr.update()] * N
        if s.get("photo") is not None:
            ref = self.service.analyze(s["photo"])
            s.update(frame=ref.frame, photo=ref.photo, reference=ref.state.to_json(None),
                     base=ref.state.to_json(None))
            sliders = _slider_updates(ref.state)
            notes = notes + [ref.report()]
        gr.Info(without_paths(f"head: {self.service.head_description}"))
        return [s, "\n".join(notes), self.service.environment().markdown()] + sliders

    @user_errors
    def apply_pose_reference(self, session, pose_photo, modes, *values):
        if pose_photo is None:
            raise gr.Error("upload a pose-reference photo first", print_exception=False)
        s = dict(_session(session))
        state, notes = self.service.transfer_from(pose_photo, current_state(s, values), modes)
        for w in notes:
            warn(w)
        s["base"] = state.to_json(None)
        return [s] + _slider_updates(state)

    @user_errors
    def reset_reference(self, session):
        s = dict(_session(session))
        s["base"] = s["reference"]
        return [s] + _slider_updates(HeadState.from_json(s["reference"]))

    @user_errors
    def reset_neutral(self, session):
        s = dict(_session(session))
        ref = HeadState.from_json(s["reference"])
        neutral = HeadState(shape=list(ref.shape), albedo=list(ref.albedo))
        s["base"] = neutral.to_json(None)
        return [s] + _slider_updates(neutral)

    @user_errors
    def load_preset(self, session, path):
        if path is None:
            return [_session(session)] + [gr.update()] * N
        from pathlib import Path

        from caphuman.controls.state import read_state_text

        checked = validated_state(read_state_text(path, f"the preset {Path(path).name}"))
        for w in checked.warnings:
            warn(w)
        s = dict(_session(session))
        s["base"] = checked.value.to_json(None)
        return [s] + _slider_updates(checked.value)

    # generation ---------------------------------------------------------------
    @user_errors
    def generate(self, session, prompt, negative, seed, randomize, steps, guidance, strength, tau,
                 num_images, resolution, scheduler, model, lora, lora_scale, *values, progress=gr.Progress()):
        s = _session(session)
        if s["photo"] is None:
            raise gr.Error("upload a reference photo first", print_exception=False)
        params = GenerationParams(prompt=prompt, negative_prompt=negative, seed=-1 if randomize else _int(seed),
                                  steps=_int(steps), guidance=guidance, strength=strength, tau=_int(tau),
                                  num_images=_int(num_images), resolution=_int(resolution), scheduler=scheduler,
                                  model=model, lora=lora, lora_scale=lora_scale)
        progress(0, desc="loading models")
        images, used = self.service.generate(
            s["photo"], current_state(s, values), params,
            on_step=lambda i, n: progress((i, n), desc="denoising", unit="steps"))
        return [(files.png(g.image, f"seed{g.seed}"), g.caption) for g in images], used.seed


def _int(v):
    """Gradio numbers arrive as float; keep non-integers for validation to reject."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def frame_to_image(frame: np.ndarray | None):
    return None if frame is None else files.jpeg(frame, "frame")
