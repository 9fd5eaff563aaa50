"""The studio's Sweep panel: one control (or two: a grid) over a range, previewed as a strip of heads,
then generated with one seed into a gallery and a downloadable contact sheet.

The sweep starts from the head the sliders show. "Preview strip" renders every cell's head over the
photo (CPU, no model); "Generate sweep" makes one image per cell through
:meth:`StudioService.generate` with the same seed, and offers ``contact_sheet.png`` plus a zip of
every image with its sidecar JSON (head state, sweep values, seed, parameters, check). Sweep
parsing, range checks and the contact sheet are the CLI's (:mod:`caphuman.batch`).
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import asdict

import gradio as gr

from caphuman.batch.contact_sheet import contact_sheet
from caphuman.batch.sweep import SweepAxis, SweepSpec, apply_values, control_range, controls, label, slug
from caphuman.errors import InputError
from caphuman.studio import serving
from caphuman.studio.generation import GenerationParams
from caphuman.studio.service import StudioService
from demo import files
from demo.handlers import _int, _session, parse_state, user_errors

#: Most cells one studio sweep may have (each is one generation).
MAX_CELLS = 24
#: Side of each head in the preview strip (pixels).
STRIP_CELL = 160
#: Useful default ranges (the full range where none is given).
DEFAULT_RANGES = {"pose.yaw": (-60, 60), "pose.pitch": (-30, 30), "pose.roll": (-30, 30), "pose.jaw": (0, 30),
                  "lighting.azimuth": (-90, 90), "lighting.elevation": (-30, 60), "lighting.intensity": (0.2, 1.6),
                  "lighting.ambient": (0.2, 1.0), "placement.scale": (0.7, 1.3), "placement.shift_x": (-0.3, 0.3),
                  "placement.shift_y": (-0.3, 0.3)}
NONE = "none"


def default_range(control: str) -> tuple[float, float]:
    if control in (None, "", NONE):
        return 0, 0
    return DEFAULT_RANGES.get(control, control_range(control))


def sweep_spec(control, start, stop, steps, control2=NONE, start2=0, stop2=0, steps2=1) -> SweepSpec:
    """The panel's fields as a validated SweepSpec (first control across, second down)."""
    if control in (None, "", NONE):
        raise InputError("choose a control to sweep")
    axes = [SweepAxis.linear(control, start, stop, _int(steps))]
    if control2 not in (None, "", NONE):
        axes.append(SweepAxis.linear(control2, start2, stop2, _int(steps2)))
    spec = SweepSpec(tuple(axes))
    if spec.size > MAX_CELLS:
        raise InputError(f"{spec.size} cells; the studio sweeps at most {MAX_CELLS} (use `python -m caphuman sweep` "
                         "or `batch` for more)")
    return spec


class SweepHandlers:
    def __init__(self, service: StudioService):
        self.service = service

    @user_errors
    def preview_strip(self, session, state_json, control, start, stop, steps, control2, start2, stop2, steps2):
        """The heads of every cell over the photo, labelled, as one image (no GPU)."""
        s = _session(session)
        spec = sweep_spec(control, start, stop, steps, control2, start2, stop2, steps2)
        base = parse_state(state_json)
        heads, labels = [], []
        for cell in spec.cells():
            heads.append(self.service.preview(apply_values(base, cell), s["frame"], STRIP_CELL).preview)
            labels.append(label(cell))
        sheet = contact_sheet(heads, labels, spec.columns, cell=STRIP_CELL)
        return files.write_bytes(files_png_bytes(sheet), "sweep-strip", ".png")

    @user_errors
    def generate_sweep(self, session, state_json, prompt, negative, seed, steps, guidance, strength, tau, resolution,
                       scheduler, model, lora, lora_scale, control, start, stop, num, control2, start2, stop2, num2,
                       progress=gr.Progress()):
        """One image per cell, one seed: gallery, contact sheet PNG and a zip of images + sidecars."""
        s = _session(session)
        if s["photo"] is None:
            raise gr.Error("upload a reference photo first", print_exception=False)
        spec = sweep_spec(control, start, stop, num, control2, start2, stop2, num2)
        base = parse_state(state_json)
        params = GenerationParams(prompt=prompt, negative_prompt=negative, seed=_int(seed), steps=_int(steps),
                                  guidance=guidance, strength=strength, tau=_int(tau), num_images=1,
                                  resolution=_int(resolution), scheduler=scheduler, model=model, lora=lora,
                                  lora_scale=lora_scale).validated()  # seed -1: drawn once, here
        cells = spec.cells()
        gallery, images, labels = [], [], []
        archive = io.BytesIO()
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
            for i, cell in enumerate(cells):
                progress((i, len(cells)), desc=f"cell {i + 1}/{len(cells)}: {label(cell)}", unit="images")
                state = apply_values(base, cell)
                out, used = self.service.generate(s["photo"], state, params)
                g = out[0]
                stem = f"{i:03d}_{slug(cell)}"
                side = {"format": "caphuman.studio_sweep/1", "cell": i, "label": label(cell), "sweep": cell,
                        "seed": g.seed, "head_state": state.to_dict(), "parameters": asdict(used),
                        "check": None if g.check is None else g.check.to_dict()}
                zf.writestr(f"{stem}.png", files_png_bytes(g.image))
                zf.writestr(f"{stem}.json", json.dumps(side, indent=2, default=str) + "\n")
                gallery.append((files.png(g.image, f"sweep-{stem}"), f"{label(cell)} · seed {g.seed}"))
                images.append(g.image)
                labels.append(label(cell))
            title = f"{params.prompt[:120]} · seed {params.seed} · {spec}"
            sheet = contact_sheet(images, labels, spec.columns, title=title)
            sheet_bytes = files_png_bytes(sheet)
            zf.writestr("contact_sheet.png", sheet_bytes)
        downloads = [files.write_bytes(sheet_bytes, "contact_sheet", ".png"),
                     files.write_bytes(archive.getvalue(), "sweep", ".zip")]
        return gallery, downloads


def files_png_bytes(image) -> bytes:
    from caphuman.batch.manifest import encode_png

    return encode_png(image)


def readable(path: str) -> str:
    """A control as a designer reads it: ``Smile (expression)`` for ``expression_controls.smile``."""
    group, name = path.split(".", 1)
    what = {"pose": "pose", "lighting": "light", "placement": "position", "expression_controls": "expression"}.get(group, group)
    return f"{name.replace('_', ' ').capitalize()} ({what})"


def build_sweep_panel(service: StudioService, session, state_in, with_state: str, gen: dict) -> dict:
    """Call inside ``gr.Blocks``. ``session``: the page's gr.State; ``state_in``: the hidden textbox the
    page's head state is written into by the ``with_state`` JS hook (the one head state of the live
    head); ``gen``: the generation components by name --
    prompt, negative, steps, guidance, strength, tau, resolution, scheduler, model, lora, lora_scale.
    Returns the panel's components."""
    h = SweepHandlers(service)
    names = controls()
    with gr.Accordion("Sweep: a contact sheet across a range of one control (or a grid of two)", open=False,
                      elem_id="sweep"):
        with gr.Row():
            choices = [(readable(n), n) for n in names]
            control = gr.Dropdown(choices, value="pose.yaw", label="Control (across)", elem_id="sweep-control")
            start = gr.Number(-60, label="From", elem_id="sweep-from")
            stop = gr.Number(60, label="To", elem_id="sweep-to")
            steps = gr.Slider(2, 12, value=5, step=1, label="Values across", elem_id="sweep-steps")
        with gr.Row():
            control2 = gr.Dropdown([("none", NONE), *choices], value=NONE, label="Second control (down, optional)")
            start2 = gr.Number(0, label="From")
            stop2 = gr.Number(0, label="To")
            steps2 = gr.Slider(1, 6, value=3, step=1, label="Values down")
        with gr.Row():
            seed = gr.Number(-1, label="Seed for every cell (-1: draw one)", precision=0, elem_id="sweep-seed")
            preview_btn = gr.Button("Preview strip", elem_id="sweep-preview")
            generate_btn = gr.Button("Generate sweep", variant="primary", elem_id="sweep-generate")
        strip = gr.Image(label="Heads of the sweep", type="filepath", interactive=False, elem_id="sweep-strip")
        gallery = gr.Gallery(label="Sweep results", columns=6, height=300, elem_id="sweep-gallery")
        downloads = gr.File(label="contact_sheet.png + every image with its sidecar JSON (zip)",
                            file_count="multiple", interactive=False, elem_id="sweep-downloads")

    ranges = lambda c: [*default_range(c)]  # noqa: E731
    control.change(ranges, control, [start, stop], show_progress="hidden", api_visibility="private")
    control2.change(ranges, control2, [start2, stop2], show_progress="hidden", api_visibility="private")
    axes = [control, start, stop, steps, control2, start2, stop2, steps2]
    preview_btn.click(h.preview_strip, [session, state_in, *axes], strip, js=with_state, api_visibility="private",
                      concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview")
    g = gen
    generate_btn.click(h.generate_sweep,
                       [session, state_in, g["prompt"], g["negative"], seed, g["steps"], g["guidance"], g["strength"],
                        g["tau"], g["resolution"], g["scheduler"], g["model"], g["lora"], g["lora_scale"], *axes],
                       [gallery, downloads], js=with_state, api_visibility="private",
                       concurrency_limit=serving.GENERATE_CONCURRENCY, concurrency_id="gpu")
    return {"control": control, "start": start, "stop": stop, "steps": steps, "control2": control2,
            "start2": start2, "stop2": stop2, "steps2": steps2, "seed": seed, "strip": strip, "gallery": gallery,
            "downloads": downloads, "generate": generate_btn}


__all__ = ["MAX_CELLS", "SweepHandlers", "build_sweep_panel", "default_range", "sweep_spec"]
