"""The studio page: reference photo | live preview + 3D | head controls, then generation."""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr

from caphuman.controls.state import HeadState
from caphuman.diffusion.lora import installed_loras
from caphuman.diffusion.presets import values_for_scheduler
from caphuman.studio import serving
from caphuman.studio.controls import SLIDERS, TRANSFER_MODES, values_from_state
from caphuman.studio.generation import MAX_IMAGES, SCHEDULERS
from caphuman.studio.service import StudioService
from demo.api import add_api
from demo.handlers import CPU_DEFAULTS, REFERENCE_LABEL, Handlers, in_use_line, new_session
from demo.inline_image import inline
from demo.sweep import build_sweep_panel

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
STATIC_DIR = Path(__file__).resolve().parent / "static"
CSS = """
#preview img {image-rendering: auto;}
.maps {min-width: 0 !important;}
#status {font-size: 0.85em;}
#live-wrap {width: 100%; max-width: 460px; margin: 0 auto; aspect-ratio: 1 / 1; background: #2a2a2a;
            border-radius: 8px; overflow: hidden;}
#live-canvas {width: 100%; height: 100%; display: block; touch-action: none; cursor: grab;}
#live-canvas:focus {outline: 2px solid var(--color-accent); outline-offset: -2px;}
#live-wrap[data-error]::after {content: attr(data-error); color: #fff; padding: 1em; display: block;}
#photo-in-use {text-align: center; font-size: 0.85em;}
#photo-in-use p {margin: 2px 0 !important;}
#head-help {font-size: 0.78em; color: var(--body-text-color-subdued); text-align: center;}
#head-help p {margin: 0 !important;}
.pose-presets {flex-wrap: wrap !important; gap: 4px !important;}
.pose-presets button {min-width: 0 !important; flex: 0 0 auto !important; width: auto !important;
                      padding: 2px 8px !important; font-size: 0.8em !important;}
.ch-note {color: var(--color-accent); font-size: 0.8em; padding: 2px 0 0;}
#preset-note, #pose-note, #generate-note, #recipe {font-size: 0.85em;}
#server-render .image-container button, #server-render .icon-button-wrapper {display: none !important;}
#server-render label, #server-render .block-label {z-index: 2;}
#gallery .thumbnail-item img, #gallery img {object-fit: contain !important;}
#gallery .caption-label, #gallery figcaption {white-space: normal !important; overflow: visible !important;
                                             text-overflow: clip !important;}
#generate-note {color: var(--body-text-color-subdued);}
@media (max-width: 720px) {
  /* phone: the live head stays pinned at the top (34% of the screen) while the page scrolls
     under it; the page starts below it and the tab bar sticks just under it */
  #status {font-size: 0.75em;}
  #live-head {position: fixed !important; top: 0; left: 0; right: 0; height: 34vh; z-index: 50; padding: 4px 0;
              margin: 0 !important; background: var(--background-fill-primary);
              box-shadow: 0 2px 6px rgba(0, 0, 0, 0.25); overflow: hidden;}
  #live-head > *, #live-head .prose {padding: 0 !important; margin: 0 !important;}
  #live-wrap {height: calc(34vh - 8px); width: calc(34vh - 8px); max-width: none; margin: 0 auto !important;}
  /* Gradio scopes this CSS inside .gradio-container .contain: the title makes the room */
  #page-title {margin-top: calc(34vh + 8px) !important;}
  [id^=slider-] {scroll-margin-top: calc(34vh + 64px);}
  #server-render {display: none;}
}
"""


def page_js() -> str:
    """The page script (Gradio's ``js``): the slider specs, then demo/static/live_head.js."""
    specs = [{"key": s.key, "lo": s.lo, "hi": s.hi, "step": s.step, "value": v}
             for s, v in zip(SLIDERS, values_from_state(HeadState()))]
    body = (STATIC_DIR / "live_head.js").read_text()
    return "() => { window.CH_CONFIG = " + json.dumps({"sliders": specs}) + ";\n" + body + "\n}"


#: Named poses (yaw, pitch, roll), degrees; yaw > 0 turns the nose to the image's right.
POSE_PRESETS = {
    "Frontal": (0, 0, 0), "¾ left": (-35, 0, 0), "¾ right": (35, 0, 0), "Profile left": (-80, 0, 0),
    "Profile right": (80, 0, 0), "Look up": (0, 20, 0), "Look down": (0, -20, 0),
}
#: JS for events that send the page's head state: replace the state input with the browser's state.
WITH_STATE = "(...a) => { if (window.CH) a[1] = window.CH.json(); return a; }"


def example_photos() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


def build_demo(service: StudioService) -> gr.Blocks:
    h = Handlers(service)
    env = service.environment()
    # Gradio's cache (uploads, API results): every minute, delete what is older than 5 minutes.
    cache_schedule = (serving.CACHE_CLEAN_FREQUENCY_S, serving.CACHE_MAX_AGE_S)
    with gr.Blocks(title="CapHuman studio", analytics_enabled=False, delete_cache=cache_schedule) as demo:
        session = gr.State(new_session())
        gr.Markdown("## CapHuman studio — one reference photo, a 3D head you steer, identity-preserving portraits",
                    elem_id="page-title")
        status = gr.Markdown(env.markdown(), elem_id="status")
        cpu = service.device == "cpu"

        sliders: dict[str, gr.Slider] = {}

        defaults = dict(zip([s.key for s in SLIDERS], values_from_state(HeadState())))

        def slider(key):
            spec = next(s for s in SLIDERS if s.key == key)
            sliders[key] = gr.Slider(spec.lo, spec.hi, value=defaults[key], step=spec.step, label=spec.label,
                                     info=spec.info or None, elem_id="slider-" + key.replace(".", "-"),
                                     interactive=True)  # no server listener: the page reads it
            return sliders[key]

        # The page's head state: the server writes new base states into state_box (the page adopts
        # them); events that need the state get it from the browser through state_in (WITH_STATE).
        state_box = gr.Textbox(visible="hidden", elem_id="head-state")
        state_in = gr.Textbox(visible="hidden", elem_id="head-state-in")
        commit_btn = gr.Button("commit", visible="hidden", elem_id="commit-state")

        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260, elem_id="reference-column"):
                # image_mode=None: Gradio hands the upload over as sent; its own convert("RGB") would ruin
                # float / 16-bit files (a [0, 1] float TIFF becomes black and white) before the intake sees them
                reference = gr.Image(label=REFERENCE_LABEL, type="filepath", height=260, elem_id="reference",
                                     sources=["upload", "clipboard"], image_mode=None)
                examples = example_photos()
                if examples:
                    gr.Examples(examples, inputs=reference, label="Example photos")
                report = gr.Markdown("Upload a photo (or pick an example): the head is fitted to its face.",
                                     elem_id="report", container=True, label="Analysis")
                with gr.Accordion("Pose reference (optional)", open=False):
                    pose_photo = gr.Image(label="Pose-reference photo", type="filepath", height=180, image_mode=None)
                    modes = gr.CheckboxGroup(list(TRANSFER_MODES), value=["pose", "expression"], label="Take from it",
                                             info="position = the head's size and place on the photo")
                    apply_pose = gr.Button("Apply pose reference", size="sm")
                    pose_note = gr.Markdown("", elem_id="pose-note")
                with gr.Accordion("FLAME head (optional)", open=False, visible=serving.flame_upload_enabled(),
                                  elem_id="flame-accordion"):
                    gr.Markdown("Sign in (free) at [flame.is.tue.mpg.de](https://flame.is.tue.mpg.de), download "
                                "**FLAME 2023 Open** (`FLAME2023Open.zip`, CC-BY-4.0) and drop it here: the head "
                                "switches to FLAME and your photo is fitted again. FLAME 2020's `generic_model.pkl` "
                                "works too. Nothing in the file is executed.")
                    flame_file = gr.File(label="FLAME2023Open.zip", file_types=[".zip", ".pkl"], type="filepath",
                                         elem_id="flame-upload")
            with gr.Column(scale=5, min_width=360, elem_id="live-column"):
                gr.HTML('<div id="live-wrap"><canvas id="live-canvas" width="512" height="512" tabindex="0" '
                        'aria-label="live head preview: drag to turn the head"></canvas></div>', elem_id="live-head",
                        js_on_load=None)
                photo_in_use = gr.Markdown(in_use_line(new_session()), elem_id="photo-in-use")
                gr.Markdown("Drag the head to turn it (Shift+drag: roll) · arrows on the head: 5° · "
                            "Ctrl+Z undo · Ctrl+Shift+Z redo", elem_id="head-help")
                with gr.Row():
                    opacity = gr.Slider(0.0, 1.0, value=1.0, step=0.05, label="Head opacity (0 = photo only)",
                                        elem_id="head-opacity", scale=3)
                    textured = gr.Checkbox(value=True, label="Person's face on the head", elem_id="head-textured",
                                           scale=2)
                with gr.Row(elem_classes="pose-presets"):
                    undo = gr.Button("↶ Undo", size="sm", elem_id="undo", min_width=0)
                    redo = gr.Button("↷ Redo", size="sm", elem_id="redo", min_width=0)
                    pose_buttons = {name: gr.Button(name, size="sm", min_width=0,
                                                    elem_id="pose-" + name.lower().replace(" ", "-").replace("¾", "34"))
                                    for name in POSE_PRESETS}
                with gr.Accordion("Server render (authoritative; updates when a control is released)",
                                  open=False, elem_id="server-render"):
                    with gr.Row():
                        # inline (data: URL) images: a release writes no image file
                        preview = inline(gr.Image(label="Server render", type="filepath", height=150,
                                                  interactive=False, elem_id="preview", elem_classes="maps",
                                                  buttons=[]))
                        maps = [inline(gr.Image(label=n, type="filepath", height=150, interactive=False,
                                                elem_classes="maps", elem_id=f"map-{n.lower()}", buttons=[]))
                                for n in ("Normals", "Albedo", "Shading")]
            with gr.Column(scale=4, min_width=300):
                with gr.Tabs(elem_id="controls-tabs"):
                    with gr.Tab("Pose"):
                        for k in ("pose.yaw", "pose.pitch", "pose.roll", "pose.jaw", "pose.eye_yaw", "pose.eye_pitch"):
                            slider(k)
                    with gr.Tab("Expression"):
                        for s in SLIDERS:
                            if s.group == "expression":
                                slider(s.key)
                    with gr.Tab("Light & position"):
                        for s in SLIDERS:
                            if s.group in ("lighting", "placement"):
                                slider(s.key)
                        refit = gr.Button("Put the head back on the face (fitted size and position)", size="sm",
                                          elem_id="reset-placement")
                with gr.Accordion("Advanced: raw expression coefficients", open=False):
                    for s in SLIDERS:
                        if s.group == "raw":
                            slider(s.key)
                with gr.Row():
                    reset_ref = gr.Button("Reset to photo", size="sm", elem_id="reset-photo")
                    reset_neutral = gr.Button("Reset to neutral", size="sm", elem_id="reset-neutral")
                with gr.Row():
                    save_preset = gr.DownloadButton("Save preset (JSON)", size="sm", elem_id="save-preset")
                    load_preset = gr.UploadButton("Load preset", file_types=[".json"], size="sm", elem_id="load-preset")
                with_placement = gr.Checkbox(False, label="apply placement too (the preset's head size and position)",
                                             elem_id="preset-placement")
                preset_note = gr.Markdown("", elem_id="preset-note")

        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                viewer = gr.Model3D(label="3D head (updates on slider release)", height=300, elem_id="viewer")
                export = gr.Button("Export hint (.npy) + mesh (.glb) + state (.json)", size="sm")
                exported = gr.File(label="Downloads", file_count="multiple", interactive=False)
            with gr.Column(scale=6):
                with gr.Row():
                    prompt = gr.Textbox(label="Prompt", value="a photo of a person, studio lighting, detailed",
                                        lines=2, scale=3, elem_id="prompt")
                    negative = gr.Textbox(label="Negative prompt", value="blurry, lowres, deformed", lines=2, scale=2)
                with gr.Row():
                    seed = gr.Number(label="Seed", value=0, precision=0, minimum=0)
                    randomize = gr.Checkbox(label="Random seed", value=True)
                    used_seed = gr.Number(label="Seed used (image i: seed + i)", precision=0, interactive=False,
                                          elem_id="used-seed")
                    num_images = gr.Slider(1, MAX_IMAGES, value=CPU_DEFAULTS["num_images"] if cpu else 2, step=1,
                                           label="Images", elem_id="num-images")
                with gr.Row():
                    steps = gr.Slider(1, 150, value=CPU_DEFAULTS["steps"] if cpu else 20, step=1, label="Quality steps",
                                      info="sampling steps: more = finer, slower", elem_id="steps")
                    guidance = gr.Slider(0.0, 30.0, value=7.0, step=0.5, label="Prompt strength",
                                         info="guidance scale: how closely the image follows the prompt")
                    strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="Likeness strength",
                                         info="CapFace strength: how strongly the photo's face steers the image")
                    tau = gr.Slider(0, 1000, value=0, step=10, label="Likeness starts late",
                                    info="tau: the noisiest steps (timestep > tau) ignore the face; 0 = face at every step")
                with gr.Row():
                    # every size the CLI accepts (--size: multiples of 64 in 64..1024); no typing to filter
                    resolution = gr.Dropdown(list(range(64, 1025, 64)), value=CPU_DEFAULTS["resolution"] if cpu else 512,
                                             label="Size (px)", elem_id="resolution", filterable=False)
                    scheduler = gr.Dropdown(list(SCHEDULERS), value="ddim", label="Scheduler",
                                            info="lcm = fast preset (LCM-LoRA, 4 steps)", elem_id="scheduler")
                    models = list(service.models) or ["default"]
                    model = gr.Dropdown(models, value=models[0], label="Base model (checkpoints/)")
                    lora = gr.Dropdown(["none", *installed_loras()], value="none", label="LoRA (checkpoints/lora/)")
                    lora_scale = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="LoRA scale")
                with gr.Row():
                    generate = gr.Button("Generate", variant="primary", elem_id="generate", interactive=True, scale=3)
                    stop = gr.Button("Stop", variant="stop", elem_id="stop", interactive=False, scale=1)
                generate_note = gr.Markdown("", elem_id="generate-note")
                gallery = gr.Gallery(label="Results (caption: photo · seed · pose asked / estimated · likeness)",
                                     columns=3, height="auto", object_fit="contain", elem_id="gallery")
                with gr.Accordion("History of this visit (pick one: its recipe, or send it back to the sliders)",
                                  open=True, elem_id="history-panel"):
                    history = gr.Gallery(label="Every image of this visit, newest first (side by side)", columns=6,
                                         height=240, object_fit="contain", elem_id="history", allow_preview=True)
                    with gr.Row():
                        send_back = gr.Button("Send back to the sliders", size="sm", elem_id="send-back")
                    recipe = gr.Markdown("", elem_id="recipe")

        sweep = build_sweep_panel(service, session, state_in, WITH_STATE, dict(  # Sweep panel (demo/sweep.py)
            prompt=prompt, negative=negative, steps=steps, guidance=guidance, strength=strength, tau=tau,
            resolution=resolution, scheduler=scheduler, model=model, lora=lora, lora_scale=lora_scale))
        add_api(service)

        # ------------------------------------------------------------------ wiring
        # Sliders have NO server listeners: the page poses the head itself every frame and commits
        # the state once a control is released (commit_btn, clicked by demo/static/live_head.js).
        # The server sends new base states through state_box only; the page sets every slider.
        quiet = dict(api_visibility="private", show_progress="hidden")
        commit_btn.click(h.commit, [session, state_in, textured], [viewer, save_preset, preview, *maps], js=WITH_STATE,
                         trigger_mode="always_last", concurrency_limit=serving.PREVIEW_CONCURRENCY,
                         concurrency_id="preview", **quiet)
        reference.change(h.upload_reference, [session, reference],
                         [session, report, state_box, photo_in_use, reference],
                         concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview",
                         api_visibility="private", show_progress_on=[report])
        # resets, pose presets, undo/redo: all in the page (one state model; placement untouched)
        reset_ref.click(None, js="() => { window.CH && window.CH.resetPhoto(); }")
        reset_neutral.click(None, js="() => { window.CH && window.CH.resetNeutral(); }")
        refit.click(None, js="() => { window.CH && window.CH.resetPlacement(); }")
        apply_pose.click(h.apply_pose_reference, [session, state_in, pose_photo, modes], [session, state_box, pose_note],
                         js=WITH_STATE, api_visibility="private", show_progress_on=[pose_note])
        load_preset.upload(h.load_preset, [session, state_in, load_preset, with_placement],
                           [session, state_box, preset_note], js="(...a) => { if (window.CH) a[1] = window.CH.json(); return a; }",
                           **quiet)
        flame_file.upload(h.install_flame, [session, flame_file], [session, report, status, state_box],
                          api_visibility="private", concurrency_limit=1, concurrency_id="install-flame")
        undo.click(None, js="() => { window.CH && window.CH.undo(); }")
        redo.click(None, js="() => { window.CH && window.CH.redo(); }")
        for name, (y, p, r) in POSE_PRESETS.items():
            pose_buttons[name].click(None, js=f"() => {{ window.CH && window.CH.pose({y}, {p}, {r}); }}")
        opacity.input(None, [opacity], js="(v) => { window.CH && window.CH.setOpacity(v); }")
        textured.input(None, [textured], js="(v) => { window.CH && window.CH.setTextured(v); }")
        # the fast preset (scheduler lcm) comes with its own steps and guidance
        scheduler.change(values_for_scheduler, [scheduler, steps, guidance], [steps, guidance],
                         show_progress="hidden", api_visibility="private")
        export.click(h.export, [session, state_in], exported, js=WITH_STATE, api_visibility="private")
        # Generate: off while it runs, Stop on; progress (image i of n, step k) on the gallery only
        gen_inputs = [session, state_in, prompt, negative, seed, randomize, steps, guidance, strength, tau, num_images,
                      resolution, scheduler, model, lora, lora_scale]
        generate.click(h.running, None, [generate, stop], queue=False, **quiet).then(
            h.generate, gen_inputs, [gallery, used_seed, generate_note, history], js=WITH_STATE,
            api_visibility="private", concurrency_limit=serving.GENERATE_CONCURRENCY, concurrency_id="gpu",
            show_progress_on=[gallery]).then(h.finished, None, [generate, stop], queue=False, **quiet)
        stop.click(h.stop, None, [stop], queue=False, **quiet)
        history.select(h.pick_history, [session], [session, recipe], **quiet)
        send_back.click(h.send_back, [session, state_in], [session, state_box, recipe], js=WITH_STATE, **quiet)
        demo.load(h.init, [session], [session, state_box], **quiet)
        demo.load(h.generate_status, None, [generate, generate_note, sweep["generate"]], **quiet)
    return demo
