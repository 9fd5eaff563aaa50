"""Event handlers: component values <-> :class:`StudioService` calls. Every user-facing problem
becomes ``gr.Error``/``gr.Warning``; anything else is logged and shown as a one-line error.
Messages shown name no server paths (:func:`caphuman.errors.without_paths`)."""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import logging
import re
import threading
import warnings

import gradio as gr
import numpy as np

from caphuman.controls.state import HeadState
from caphuman.errors import CapHumanError, without_paths
from caphuman.studio.controls import SLIDERS, merge_preset, preset_name
from caphuman.studio.generation import GenerationParams
from caphuman.validation import MAX_SEED
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
    """Per-browser-tab data: frame/photo arrays, the fitted reference state (JSON), the reference
    photo projected on the fitted head (the live head's face texture), the photo's file name
    (``photo_name``) and this visit's generated images (``history``)."""
    return {"frame": None, "photo": None, "reference": HeadState().to_json(None), "projection": None,
            "photo_id": None, "photo_name": None, "history": []}


def _session(session) -> dict:
    return session if isinstance(session, dict) else new_session()


def parse_state(text) -> HeadState:
    """The page's head state (JSON from the browser's single state object)."""
    if isinstance(text, HeadState):
        return text
    checked = validated_state(text or "")
    return checked.value


def photo_name(path) -> str | None:
    """An upload as the user knows it: its file name (never the server path)."""
    if path is None:
        return None
    from pathlib import Path

    return Path(str(path)).name or "photo"


def in_use_line(s: dict) -> str:
    """The line under the live head naming the photo the head, Generate and exports use."""
    name = s.get("photo_name")
    if s.get("photo") is None:
        return "**Photo in use:** none yet — upload a photo with one face (Generate needs one)"
    return f"**Photo in use:** {name}"


_DOCTOR = re.compile(r"\s*\((?:see|run)\s+`([^`]+)`\)")


def analysis_markdown(ref, name: str | None) -> str:
    """The Analysis box: one short readiness line, then the analysis notes folded (grouped:
    missing optional models first, each once, commands collected at the end)."""
    n_faces = getattr(getattr(ref, "analysis", None), "faces", None)
    faces = f", {len(n_faces)} face{'s' if len(n_faces) != 1 else ''}" if n_faces is not None else ""
    head = f"**Head fitted to {name or 'the photo'}** ({ref.detector.split(' ')[0]}{faces})."
    if ref.detector == "none":
        head = f"**{name or 'The photo'} is in use, but the head was not fitted** (photo analysis is not installed)."
    missing, other, commands = [], [], []
    for w in dict.fromkeys(ref.warnings):
        text = without_paths(w)
        for cmd in _DOCTOR.findall(text):
            if cmd not in commands:
                commands.append(cmd)
        text = _DOCTOR.sub("", text).strip()
        (missing if re.search(r"missing|not found|not installed", text) else other).append(text)
    if not (missing or other):
        return head
    lines = [f"- {t}" for t in other] + [f"- {t}" for t in missing]
    if commands:
        lines.append("- to add what is missing: " + ", ".join(f"`{c}`" for c in commands))
    what = []
    if other:
        what.append(f"{len(other)} note{'s' if len(other) > 1 else ''}")
    if missing:
        what.append(f"{len(missing)} optional model{'s' if len(missing) > 1 else ''} missing (works without them)")
    return head + f"\n\n<details><summary>{' · '.join(what)}</summary>\n\n" + "\n".join(lines) + "\n\n</details>"


# ---------------------------------------------------------------------------- handlers
class Handlers:
    def __init__(self, service: StudioService):
        self.service = service
        self._stops: dict[str, threading.Event] = {}  # session hash -> Stop pressed

    # state -> page ------------------------------------------------------------
    def state_message(self, session, state: HeadState, history="push", fit: HeadState | None = None) -> str:
        """JSON for the page's state box: the new base state (the page shows it on every slider,
        rounded to the step, and keeps its exact values), the live head payload URL, the fitted
        state and name of the photo in use (``fit``, with a new photo) and what the undo history
        does (``"push"``, ``"reset"``: it starts here); a fresh nonce so the page adopts it even
        when it repeats."""
        s = _session(session)
        photo = None
        if s.get("projection") is not None:
            photo = (s["photo_id"], s["projection"], s["frame_jpeg"])
        url = live.payload_url(self.service, state, photo)
        msg = {"nonce": next(_nonce), "state": state.to_dict(), "payload": url, "history": history}
        if fit is not None:
            msg["fit"] = fit.to_dict()
            msg["photo"] = s.get("photo_name")
        return json.dumps(msg)

    @soft_errors(2)
    def init(self, session):
        """Page load: the live head payload for the current (neutral) state; undo starts here."""
        s = _session(session)
        ref = HeadState.from_json(s["reference"])
        return [s, self.state_message(s, ref, "reset", fit=ref)]

    # preview ------------------------------------------------------------------
    def _maps(self, result) -> list:
        step = max(1, result.preview.shape[0] // MAP_SIZE)
        return [inline_jpeg(result.maps[k][::step, ::step]) for k in ("normals", "albedo", "shading")]

    def _preset_text(self, s: dict, state: HeadState) -> str:
        data = state.to_dict()
        if s.get("photo_name"):
            data = {"made_from": s["photo_name"], **data}
        return json.dumps(data, indent=2) + "\n"

    def _file_name(self, s: dict, state: HeadState, suffix: str = ".json") -> str:
        """``head-yaw30-smile05-astronaut.json``: the controls, then the photo it was made from."""
        name = preset_name(state)[:-len(".json")]
        if s.get("photo_name"):
            stem = re.sub(r"[^A-Za-z0-9_-]+", "_", s["photo_name"].rsplit(".", 1)[0])[:40].strip("_")
            name += "-" + (stem or "photo")
        return name + suffix

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
        preset = files.named_text(self._preset_text(s, state), self._file_name(s, state))
        step = max(1, result.preview.shape[0] // MAP_SIZE)
        return [glb, preset, inline_jpeg(result.preview[::step, ::step]), *self._maps(result)]

    @user_errors
    def export(self, session, state_json):
        """Hint (.npy, 9 x H x W float32) + GLB + state JSON for download, named after the photo."""
        s = _session(session)
        state = parse_state(state_json)
        result = self.service.preview(state, None)
        return [files.npy(result.hint, self._file_name(s, state, "")[5:] or "hint"),
                files.write_bytes(self.service.glb(state), "head", ".glb"),
                files.named_text(self._preset_text(s, state), self._file_name(s, state))]

    # reference ----------------------------------------------------------------
    @soft_errors(5)
    def upload_reference(self, session, photo):
        """New reference photo: analyse, keep frame + fitted state, move the sliders to it. A photo
        without a usable face keeps the photo in use (and says so, in the Analysis box, under the
        live head and on the Reference box's label)."""
        old = _session(session)
        if photo is None:
            if old.get("photo") is None:
                return [old, "", gr.update(), in_use_line(old), gr.update(label=REFERENCE_LABEL)]
            s = new_session()
            state = HeadState()
            return [s, "No photo in use: upload one to fit the head to it.", self.state_message(s, state, "reset", state),
                    in_use_line(s), gr.update(label=REFERENCE_LABEL)]
        name = photo_name(photo)
        try:
            ref = self.service.analyze(photo)
        except CapHumanError as exc:
            reason = without_paths(exc, [photo] if isinstance(photo, str) else []).rstrip(".")
            if old.get("photo") is not None:
                keep = f"**Still using the previous photo, {old['photo_name']}**: the head, Generate and exports use it."
                label = f"Reference photo — NOT in use (no usable face); still using {old['photo_name']}"
            else:
                keep = "**No photo in use**: Generate needs a photo with one face; the head controls keep working."
                label = "Reference photo — NOT in use (no usable face)"
            advice = (f"**No usable face in {name}:** {reason}.\n\n{keep}\n\nTry a photo with one face, seen from "
                      "the front, well lit and not cropped.")
            old = dict(old, shown_unusable=name)
            return [old, advice, gr.update(), in_use_line(old), gr.update(label=label)]
        fitted = ref.state
        s = new_session()
        s.update(frame=ref.frame, photo=ref.photo, reference=fitted.to_json(None), photo_name=name,
                 history=list(old.get("history") or []))
        self._project(s, fitted)
        return [s, analysis_markdown(ref, name), self.state_message(s, fitted, "reset", fit=fitted), in_use_line(s),
                gr.update(label=REFERENCE_LABEL)]

    def _project(self, s: dict, fitted: HeadState) -> None:
        """The reference photo on the fitted head (per-vertex photo coordinates + visibility)."""
        s["projection"] = self.service.photo_projection(fitted, s["frame"])
        s["photo_id"] = f"{next(_nonce)}"
        s["frame_jpeg"] = files.encode_jpeg(s["frame"], 90)

    @soft_errors(4)
    def install_flame(self, session, path):
        """Uploaded FLAME release: install it, switch the live head, re-fit the current photo on it."""
        notes = self.service.install_flame(path)
        s = dict(_session(session))
        if s.get("photo") is not None:
            ref = self.service.analyze(s["photo"])
            state = ref.state
            s.update(frame=ref.frame, photo=ref.photo, reference=state.to_json(None))
            self._project(s, state)
            notes = notes + [analysis_markdown(ref, s.get("photo_name"))]
        else:
            state = HeadState()
            s["reference"] = state.to_json(None)
        gr.Info(without_paths(f"head: {self.service.head_description}"))
        return [s, "\n\n".join(notes), self.service.environment().markdown(),
                self.state_message(s, state, "reset", fit=state)]

    @soft_errors(3)
    def apply_pose_reference(self, session, state_json, pose_photo, modes):
        """Copy pose / expression / lighting (and position only when ticked) from another photo;
        its notes are said once, in the note under the button (no toasts)."""
        if pose_photo is None:
            return [gr.update(), gr.update(), "Choose a pose-reference photo first."]
        s = dict(_session(session))
        try:
            state, notes = self.service.transfer_from(pose_photo, parse_state(state_json), modes)
        except CapHumanError as exc:
            return [gr.update(), gr.update(),
                    f"**Not applied:** {without_paths(exc, [pose_photo] if isinstance(pose_photo, str) else [])}"]
        took = ", ".join(modes)
        text = f"Took {took} from {photo_name(pose_photo)}."
        notes = list(dict.fromkeys(_DOCTOR.sub("", without_paths(w)).strip() for w in notes))
        if notes:
            text += "\n\n<details><summary>" + f"{len(notes)} note{'s' if len(notes) > 1 else ''}</summary>\n\n" + \
                "\n".join(f"- {n}" for n in notes) + "\n\n</details>"
        return [s, self.state_message(s, state), text]

    @soft_errors(3)
    def load_preset(self, session, state_json, path, with_placement=False):
        """A saved preset onto the head on screen: exactly the fields it names change (the
        placement only when "apply placement too" is ticked; the face shape always stays the
        photo's); out-of-range values are clamped and listed in the note under the buttons."""
        if path is None:
            return [_session(session), gr.update(), ""]
        from pathlib import Path

        from caphuman.controls.state import read_state_text

        s = dict(_session(session))
        name = Path(path).name
        text = read_state_text(path, f"the preset {name}")
        merged = merge_preset(parse_state(state_json), text, placement=bool(with_placement))
        lines = [f"Loaded {name}" + (f" (made on {merged.made_from})" if merged.made_from else "") + ": "
                 + (", ".join(merged.changed) if merged.changed else "nothing to change") + "."]
        lines += [f"- {w}" for w in merged.notes]
        return [s, self.state_message(s, merged.state), "\n".join(lines)]

    # generation ---------------------------------------------------------------
    def generate_status(self):
        """Generate (and Generate sweep) enabled only when generation can run; otherwise
        disabled, with the reason."""
        svc = self.service
        reason = svc.generator_error
        if svc.generator is None and not reason:
            reason = "no generation weights are installed (python app.py --weights DIR)"
        if reason:
            off = gr.update(interactive=False, value="Generate (not available)")
            return off, f"Generate is off: {without_paths(reason)}", gr.update(interactive=False)
        note = ""
        if svc.device == "cpu":
            note = (f"On this CPU: defaults {CPU_DEFAULTS['resolution']} px, {CPU_DEFAULTS['steps']} steps, "
                    f"{CPU_DEFAULTS['num_images']} image (a GPU makes 512 px, 20 steps practical).")
        return gr.update(interactive=True, value="Generate"), note, gr.update(interactive=True)

    def running(self, request: gr.Request = None):
        """Generate pressed: Generate off, Stop on, until :meth:`finished`."""
        self._stop_event(request).clear()
        return gr.update(interactive=False, value="Generating…"), gr.update(interactive=True, visible=True)

    def finished(self):
        return gr.update(interactive=True, value="Generate"), gr.update(interactive=False, value="Stop")

    def stop(self, request: gr.Request = None):
        """Stop: the running generation ends after its current step (the worker is free at once)."""
        self._stop_event(request).set()
        return gr.update(interactive=False, value="Stopping…")

    def _stop_event(self, request) -> threading.Event:
        key = getattr(request, "session_hash", None) or "-"
        return self._stops.setdefault(key, threading.Event())

    @soft_errors(4)
    def generate(self, session, state_json, prompt, negative, seed, randomize, steps, guidance, strength, tau,
                 num_images, resolution, scheduler, model, lora, lora_scale, progress=gr.Progress(),
                 request: gr.Request = None):
        """One image at a time, image i with seed ``seed + i`` as a batch of one, so that
        ``python -m caphuman generate --seed S`` (the recipe in its caption) reproduces it exactly;
        progress per image and step; Stop keeps the images already made."""
        s = _session(session)
        if s["photo"] is None:
            shown = s.get("shown_unusable")
            why = f"the photo shown ({shown}) has no usable face" if shown else "no reference photo is in use"
            return [gr.update(), gr.update(), f"**Not generated:** {why}; upload a photo with one face.", gr.update()]
        params = GenerationParams(prompt=prompt, negative_prompt=negative, seed=-1 if randomize else _int(seed),
                                  steps=_int(steps), guidance=guidance, strength=strength, tau=_int(tau),
                                  num_images=_int(num_images), resolution=_int(resolution), scheduler=scheduler,
                                  model=model, lora=lora, lora_scale=lora_scale).validated()
        state = parse_state(state_json)
        self.last_generate_state = state  # what Generate used (tests compare it with the screen)
        stop = self._stop_event(request)
        n, made = params.num_images, []
        progress(0, desc=f"image 1 of {n}: loading the models")

        def on_step(i, k, total):
            if stop.is_set():
                raise _Stopped(i, k)
            progress((i * total + k, n * total), desc=f"image {i + 1} of {n} · step {k}/{total}", unit="steps")

        stopped = None
        try:
            for i in range(n):
                one = dataclasses.replace(params, seed=(params.seed + i) % (MAX_SEED + 1), num_images=1)
                if stop.is_set():
                    raise _Stopped(i, 0)
                images, _ = self.service.generate(s["photo"], state, one,
                                                  on_step=lambda k, total, i=i: on_step(i, k, total))
                made.append((images[0], one))
        except _Stopped as exc:
            stopped = exc
        finally:
            stop.clear()
        photo = s.get("photo_name") or "photo"
        out, entries = [], []
        for g, one in made:
            recipe = cli_recipe(photo, one, s.get("photo_name"))
            caption = f"{photo} · seed {g.seed} · {one.steps} steps · {one.resolution} px · {g.check.summary() if g.check else 'identity n/a'}"
            path = files.png(g.image, f"seed{g.seed}")
            out.append((path, caption))
            entries.append({"image": path, "caption": caption, "recipe": recipe, "state": state.to_json(None),
                            "photo": photo})
        s["history"] = (list(s.get("history") or []) + entries)[-48:]
        note = ""
        if stopped is not None:
            note = (f"Stopped at image {stopped.image + 1} of {n}, step {stopped.step}/{params.steps}; "
                    f"kept {len(made)} finished image{'s' if len(made) != 1 else ''}.")
        history = [(e["image"], e["caption"]) for e in reversed(s["history"])]
        return [out if out else gr.update(), params.seed, note, history]

    def pick_history(self, session, evt: gr.SelectData):
        """A history image selected: its recipe (and the index, for "send back to the sliders")."""
        s = dict(_session(session))
        hist = list(reversed(s.get("history") or []))
        if evt is None or not (0 <= evt.index < len(hist)):
            return s, ""
        e = hist[evt.index]
        s["picked"] = e
        return s, f"**{e['caption']}**\n\nReproduce it exactly:\n\n```\n{e['recipe']}\n```"

    @soft_errors(3)
    def send_back(self, session, state_json):
        """The picked history image's head settings back on the sliders (pose, expression, light;
        its placement only when it was made on the photo in use)."""
        s = dict(_session(session))
        e = s.get("picked")
        if not e:
            return [s, gr.update(), "Pick an image in the history first."]
        saved = HeadState.from_json(e["state"])
        current = parse_state(state_json)
        same_photo = e.get("photo") == s.get("photo_name")
        state = saved.replace(shape=list(current.shape), albedo=list(current.albedo),
                              placement=saved.placement if same_photo else current.placement)
        return [s, self.state_message(s, state), f"Sliders set to the settings of: {e['caption']}"]


class _Stopped(Exception):
    def __init__(self, image: int, step: int):
        super().__init__(f"stopped at image {image + 1}, step {step}")
        self.image, self.step = image, step


#: The Reference box's label while its photo is the one in use.
REFERENCE_LABEL = "Reference photo"
#: Generation defaults on a CPU (a 512 px, 20-step, 2-image run took about 5 minutes on 2 cores).
CPU_DEFAULTS = {"resolution": 256, "steps": 10, "num_images": 1}


def cli_recipe(photo: str, p: GenerationParams, name: str | None) -> str:
    """The command that reproduces one studio image (seed, batch of one, same head state file)."""
    import shlex

    parts = ["python -m caphuman generate", f"--reference {shlex.quote(photo)}",
             "--params head-state.json", f"--prompt {shlex.quote(p.prompt)}"]
    if p.negative_prompt:
        parts.append(f"--negative-prompt {shlex.quote(p.negative_prompt)}")
    parts += [f"--seed {p.seed}", f"--steps {p.steps}", f"--guidance {p.guidance:g}", f"--strength {p.strength:g}",
              f"--tau {p.tau}", f"--size {p.resolution}"]
    if p.scheduler == "lcm":
        parts.append("--preset fast")
    else:
        parts.append(f"--scheduler {p.scheduler}")
    if p.lora:
        parts.append(f"--lora {shlex.quote(p.lora)} --lora-scale {p.lora_scale:g}")
    if p.model:
        parts.append(f"--weights checkpoints/{shlex.quote(p.model)}")
    parts.append(f"--out seed{p.seed}.png")
    return " \\\n  ".join(parts) + "\n# head-state.json: the preset saved with these sliders (Save preset)"


def _int(v):
    """Gradio numbers arrive as float; keep non-integers for validation to reject."""
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def frame_to_image(frame: np.ndarray | None):
    return None if frame is None else files.jpeg(frame, "frame")
