"""Event handlers: component values <-> :class:`StudioService` calls. Every user-facing problem
becomes ``gr.Error``/``gr.Warning``; anything else is logged and shown as a one-line error.
Messages shown name no server paths (:func:`caphuman.errors.without_paths`)."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import warnings

import gradio as gr
import numpy as np

from caphuman.controls.state import HeadState
from caphuman.errors import CapHumanError, without_paths
from caphuman.studio.controls import SLIDERS, on_screen, preset_name, values_from_state
from caphuman.studio.generation import GenerationParams
from caphuman.studio.service import StudioService, validated_state
from demo import files, live
from demo.inline_image import inline_jpeg

log = logging.getLogger("caphuman.studio")
_request_ids = itertools.count(1)  # names an internal error in both the log and the message
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
            except CapHumanError as exc:  # expected: one log line, no traceback
                log.info("refused (%s): %s: %s", fn.__name__, type(exc).__name__,
                         (str(exc).splitlines() or [""])[0][:300])
                raise gr.Error(without_paths(exc, _paths(args, kwargs)), print_exception=False) from None
            except Exception as exc:  # noqa: BLE001 - never a traceback in the UI
                ref = f"{next(_request_ids):06d}"
                log.exception("studio handler %s failed [request %s]", fn.__name__, ref)
                raise gr.Error(f"internal error ({exc.__class__.__name__}); details are in the server log "
                               f"(request {ref})", print_exception=False) from None
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


def soft_errors(outputs: int):
    """Like :func:`user_errors`, but a failure leaves every output as it was (a toast says why):
    no red "Error" badge is left on sliders, the report or the gallery."""

    def deco(fn):
        inner = user_errors(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            try:
                return inner(*args, **kwargs)
            except gr.Error as exc:
                gr.Warning(exc.message)
                return [gr.update()] * outputs

        return wrapper

    return deco


# ---------------------------------------------------------------------------- session
_nonce = itertools.count(1)


def new_session() -> dict:
    """Per-browser-tab data: frame/photo arrays, the fitted reference state (JSON) and the
    reference photo projected on the fitted head (the live head's face texture)."""
    return {"frame": None, "photo": None, "reference": HeadState().to_json(None), "projection": None,
            "photo_id": None}


def _session(session) -> dict:
    return session if isinstance(session, dict) else new_session()


def parse_state(text) -> HeadState:
    """The page's head state (JSON from the browser's single state object)."""
    if isinstance(text, HeadState):
        return text
    checked = validated_state(text or "")
    return checked.value


def _slider_updates(state: HeadState) -> list[float]:
    return values_from_state(state)


# ---------------------------------------------------------------------------- handlers
class Handlers:
    def __init__(self, service: StudioService):
        self.service = service

    # state -> page ------------------------------------------------------------
    def state_message(self, session, state: HeadState) -> str:
        """JSON for the page's state box: the new base state (what the sliders show) + the live
        head payload URL; a fresh nonce so the page adopts it even when it repeats."""
        s = _session(session)
        photo = None
        if s.get("projection") is not None:
            photo = (s["photo_id"], s["projection"], s["frame_jpeg"])
        url = live.payload_url(self.service, state, photo)
        return json.dumps({"nonce": next(_nonce), "state": state.to_dict(), "payload": url})

    def _to_page(self, s, state: HeadState) -> list:
        state = on_screen(state)
        return [s, self.state_message(s, state)] + _slider_updates(state)

    @soft_errors(2)
    def init(self, session):
        """Page load: the live head payload for the current (neutral) state."""
        s = _session(session)
        return [s, self.state_message(s, HeadState.from_json(s["reference"]))]

    # preview ------------------------------------------------------------------
    def _maps(self, result) -> list:
        step = max(1, result.preview.shape[0] // MAP_SIZE)
        return [inline_jpeg(result.maps[k][::step, ::step]) for k in ("normals", "albedo", "shading")]

    @soft_errors(6)
    def commit(self, session, state_json, textured=False):
        """A control was released (or the state replaced): the authoritative server render of the
        page's state: preview + condition maps, 3D viewer GLB, preset JSON download. ``textured``
        (the page's "Person's face on the head"): the server render shows the reference photo on
        the head too (the condition maps never change)."""
        s = _session(session)
        state = parse_state(state_json)
        projection = s.get("projection") if textured else None
        result = self.service.preview(state, s["frame"], projection=projection)
        glb = files.write_bytes(self.service.glb(state), "head", ".glb")
        preset = files.named_text(state.to_json() + "\n", preset_name(state))
        step = max(1, result.preview.shape[0] // MAP_SIZE)
        return [glb, preset, inline_jpeg(result.preview[::step, ::step]), *self._maps(result)]

    @user_errors
    def export(self, session, state_json):
        """Hint (.npy, 9 x H x W float32) + GLB + state JSON for download."""
        state = parse_state(state_json)
        result = self.service.preview(state, None)
        return [files.npy(result.hint, "hint"), files.write_bytes(self.service.glb(state), "head", ".glb"),
                files.named_text(state.to_json() + "\n", preset_name(state))]

    # reference ----------------------------------------------------------------
    @soft_errors(3 + N)
    def upload_reference(self, session, photo):
        """New reference photo: analyse, keep frame + fitted state, move the sliders to it. A photo
        without a usable face keeps the page as it was and says what to do in the Analysis box."""
        s = new_session()
        if photo is None:
            state = HeadState()
            return [s, ""] + self._to_page(s, state)[1:]
        try:
            ref = self.service.analyze(photo)
        except CapHumanError as exc:
            reason = without_paths(exc, [photo] if isinstance(photo, str) else [])
            advice = ("No usable face in this photo: " + reason.rstrip(".") + ".\nTry a photo with one face, "
                      "seen from the front, well lit and not cropped; the head controls keep working meanwhile.")
            return [gr.update(), advice, gr.update()] + [gr.update()] * N
        # The warnings go in the Analysis box (ref.report()) only: a stack of toasts would cover
        # the controls for seconds on every upload.
        fitted = on_screen(ref.state)
        s.update(frame=ref.frame, photo=ref.photo, reference=fitted.to_json(None))
        self._project(s, fitted)
        return [s, ref.report()] + self._to_page(s, fitted)[1:]

    def _project(self, s: dict, fitted: HeadState) -> None:
        """The reference photo on the fitted head (per-vertex photo coordinates + visibility)."""
        s["projection"] = self.service.photo_projection(fitted, s["frame"])
        s["photo_id"] = f"{next(_nonce)}"
        s["frame_jpeg"] = files.encode_jpeg(s["frame"], 90)

    @soft_errors(4 + N)
    def install_flame(self, session, path):
        """Uploaded FLAME release: install it, switch the live head, re-fit the current photo on it."""
        notes = self.service.install_flame(path)
        s = dict(_session(session))
        state = HeadState.from_json(s["reference"])
        if s.get("photo") is not None:
            ref = self.service.analyze(s["photo"])
            state = on_screen(ref.state)
            s.update(frame=ref.frame, photo=ref.photo, reference=state.to_json(None))
            self._project(s, state)
            notes = notes + [ref.report()]
        else:
            state = HeadState()
            s["reference"] = state.to_json(None)
        gr.Info(without_paths(f"head: {self.service.head_description}"))
        page = self._to_page(s, state)
        return [page[0], "\n".join(notes), self.service.environment().markdown()] + page[1:]

    @soft_errors(2 + N)
    def apply_pose_reference(self, session, state_json, pose_photo, modes):
        if pose_photo is None:
            raise gr.Error("upload a pose-reference photo first", print_exception=False)
        s = dict(_session(session))
        state, notes = self.service.transfer_from(pose_photo, parse_state(state_json), modes)
        for w in notes:
            warn(w)
        return self._to_page(s, state)

    @soft_errors(2 + N)
    def reset_reference(self, session):
        s = dict(_session(session))
        return self._to_page(s, HeadState.from_json(s["reference"]))

    @soft_errors(2 + N)
    def reset_neutral(self, session, state_json):
        """Neutral pose and expression, default light; the identity and the placement stay."""
        s = dict(_session(session))
        ref = HeadState.from_json(s["reference"])
        current = parse_state(state_json)
        neutral = HeadState(shape=list(ref.shape), albedo=list(ref.albedo), placement=current.placement)
        return self._to_page(s, neutral)

    @soft_errors(2 + N)
    def load_preset(self, session, path):
        if path is None:
            return [_session(session), gr.update()] + [gr.update()] * N
        from pathlib import Path

        from caphuman.controls.state import read_state_text

        checked = validated_state(read_state_text(path, f"the preset {Path(path).name}"))
        for w in checked.warnings:
            warn(w)
        return self._to_page(dict(_session(session)), checked.value)

    # generation ---------------------------------------------------------------
    def generate_status(self):
        """Generate enabled only when generation can run; otherwise disabled, with the reason."""
        svc = self.service
        reason = svc.generator_error
        if svc.generator is None and not reason:
            reason = "no generation weights are installed (python app.py --weights DIR)"
        if reason:
            return gr.update(interactive=False, value="Generate (not available)"), f"Generate is off: {reason}"
        return gr.update(interactive=True, value="Generate"), ""

    @soft_errors(3)
    def generate(self, session, state_json, prompt, negative, seed, randomize, steps, guidance, strength, tau,
                 num_images, resolution, scheduler, model, lora, lora_scale, progress=gr.Progress()):
        s = _session(session)
        if s["photo"] is None:
            raise gr.Error("upload a reference photo first", print_exception=False)
        params = GenerationParams(prompt=prompt, negative_prompt=negative, seed=-1 if randomize else _int(seed),
                                  steps=_int(steps), guidance=guidance, strength=strength, tau=_int(tau),
                                  num_images=_int(num_images), resolution=_int(resolution), scheduler=scheduler,
                                  model=model, lora=lora, lora_scale=lora_scale)
        progress(0, desc="loading models")
        state = parse_state(state_json)
        self.last_generate_state = state  # what Generate used (tests compare it with the screen)
        images, used = self.service.generate(
            s["photo"], state, params,
            on_step=lambda i, n: progress((i, n), desc="denoising", unit="steps"))
        return [(files.png(g.image, f"seed{g.seed}"), g.caption) for g in images], used.seed, ""


def _int(v):
    """Gradio numbers arrive as float; keep non-integers for validation to reject."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def frame_to_image(frame: np.ndarray | None):
    return None if frame is None else files.jpeg(frame, "frame")
