"""The studio page: reference photo | live preview + 3D | head controls, then generation."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from caphuman.controls.state import HeadState
from caphuman.diffusion.lora import installed_loras
from caphuman.diffusion.presets import values_for_scheduler
from caphuman.studio import serving
from caphuman.studio.controls import SLIDERS, TRANSFER_MODES, values_from_state
from caphuman.studio.generation import MAX_IMAGES, RESOLUTIONS, SCHEDULERS
from caphuman.studio.service import StudioService
from demo.api import add_api
from demo.handlers import Handlers, new_session
from demo.sweep import build_sweep_panel

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"
CSS = """
#preview img {image-rendering: auto;}
.maps {min-width: 0 !important;}
#status {font-size: 0.85em;}
"""


def example_photos() -> list[str]:
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(str(p) for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"))


def build_demo(service: StudioService) -> gr.Blocks:
    h = Handlers(service)
    env = service.environment()
    with gr.Blocks(title="CapHuman studio", analytics_enabled=False, delete_cache=(600, 1800)) as demo:
        session = gr.State(new_session())
        gr.Markdown("## CapHuman studio — one reference photo, a 3D head you steer, identity-preserving portraits")
        status = gr.Markdown(env.markdown(), elem_id="status")

        sliders: dict[str, gr.Slider] = {}

        defaults = dict(zip([s.key for s in SLIDERS], values_from_state(HeadState())))

        def slider(key):
            spec = next(s for s in SLIDERS if s.key == key)
            sliders[key] = gr.Slider(spec.lo, spec.hi, value=defaults[key], step=spec.step, label=spec.label,
                                     info=spec.info or None, elem_id="slider-" + key.replace(".", "-"))
            return sliders[key]

        with gr.Row(equal_height=False):
            with gr.Column(scale=3, min_width=260):
                reference = gr.Image(label="Reference photo", type="filepath", height=260, elem_id="reference",
                                     sources=["upload", "clipboard"])
                examples = example_photos()
                if examples:
                    gr.Examples(examples, inputs=reference, label="Example photos")
                report = gr.Textbox(label="Analysis", lines=2, interactive=False, elem_id="report")
                with gr.Accordion("Pose reference (optional)", open=False):
                    pose_photo = gr.Image(label="Pose-reference photo", type="filepath", height=180)
                    modes = gr.CheckboxGroup(list(TRANSFER_MODES), value=["pose", "expression"], label="Take from it")
                    apply_pose = gr.Button("Apply pose reference", size="sm")
                with gr.Accordion("FLAME head (optional)", open=False, visible=serving.flame_upload_enabled(),
                                  elem_id="flame-accordion"):
                    gr.Markdown("Sign in (free) at [flame.is.tue.mpg.de](https://flame.is.tue.mpg.de), download "
                                "**FLAME 2023 Open** (`FLAME2023Open.zip`, CC-BY-4.0) and drop it here: the head "
                                "switches to FLAME and your photo is fitted again. FLAME 2020's `generic_model.pkl` "
                                "works too. Nothing in the file is executed.")
                    flame_file = gr.File(label="FLAME2023Open.zip", file_types=[".zip", ".pkl"], type="filepath",
                                         elem_id="flame-upload")
            with gr.Column(scale=5, min_width=360):
                preview = gr.Image(label="Live preview (shaded head over the photo)", type="filepath",
                                   height=420, interactive=False, elem_id="preview")
                with gr.Row():
                    maps = [gr.Image(label=n, type="filepath", height=150, interactive=False, elem_classes="maps",
                                     elem_id=f"map-{n.lower()}") for n in ("Normals", "Albedo", "Shading")]
            with gr.Column(scale=4, min_width=300):
                with gr.Tab("Pose"):
                    for k in ("pose.yaw", "pose.pitch", "pose.roll", "pose.jaw"):
                        slider(k)
                with gr.Tab("Expression"):
                    for s in SLIDERS:
                        if s.group == "expression":
                            slider(s.key)
                with gr.Tab("Light & position"):
                    for s in SLIDERS:
                        if s.group in ("lighting", "placement"):
                            slider(s.key)
                with gr.Accordion("Advanced: raw expression coefficients", open=False):
                    for s in SLIDERS:
                        if s.group == "raw":
                            slider(s.key)
                with gr.Row():
                    reset_ref = gr.Button("Reset to reference", size="sm")
                    reset_neutral = gr.Button("Reset to neutral", size="sm")
                with gr.Row():
                    save_preset = gr.DownloadButton("Save preset (JSON)", size="sm", elem_id="save-preset")
                    load_preset = gr.UploadButton("Load preset", file_types=[".json"], size="sm")

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
                    used_seed = gr.Number(label="Seed used", precision=0, interactive=False, elem_id="used-seed")
                    num_images = gr.Slider(1, MAX_IMAGES, value=2, step=1, label="Images", elem_id="num-images")
                with gr.Row():
                    steps = gr.Slider(1, 100, value=20, step=1, label="Steps", elem_id="steps")
                    guidance = gr.Slider(1.0, 15.0, value=7.0, step=0.5, label="Guidance")
                    strength = gr.Slider(0.0, 2.0, value=1.0, step=0.05, label="CapFace strength")
                    tau = gr.Slider(0, 1000, value=0, step=10, label="tau (0 = identity at every step)")
                with gr.Row():
                    resolution = gr.Dropdown([r for r in RESOLUTIONS], value=512, label="Resolution", elem_id="resolution")
                    scheduler = gr.Dropdown(list(SCHEDULERS), value="ddim", label="Scheduler",
                                            info="lcm = fast preset (LCM-LoRA, 4 steps)", elem_id="scheduler")
                    models = list(service.models) or ["default"]
                    model = gr.Dropdown(models, value=models[0], label="Base model (checkpoints/)")
                    lora = gr.Dropdown(["none", *installed_loras()], value="none", label="LoRA (checkpoints/lora/)")
                    lora_scale = gr.Slider(0.0, 2.0, value=0.8, step=0.05, label="LoRA scale")
                    generate = gr.Button("Generate", variant="primary", elem_id="generate",
                                         interactive=True)
                gallery = gr.Gallery(label="Results (caption: seed · pose asked / estimated · identity similarity)", columns=4, height=320,
                                     elem_id="gallery")

        build_sweep_panel(service, session, [sliders[s.key] for s in SLIDERS], dict(  # Sweep panel (demo/sweep.py)
            prompt=prompt, negative=negative, steps=steps, guidance=guidance, strength=strength, tau=tau,
            resolution=resolution, scheduler=scheduler, model=model, lora=lora, lora_scale=lora_scale))
        add_api(service)

        # ------------------------------------------------------------------ wiring
        values = [sliders[s.key] for s in SLIDERS]
        live = dict(fn=h.live_preview, inputs=[session, *values], outputs=[preview, *maps],
                    show_progress="hidden", api_visibility="private",
                    concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview")
        commit = dict(fn=h.commit, inputs=[session, *values], outputs=[viewer, save_preset],
                      show_progress="hidden", api_visibility="private",
                      concurrency_limit=serving.PREVIEW_CONCURRENCY, concurrency_id="preview")
        for sl in values:
            sl.input(trigger_mode="always_last", **live)
            sl.release(**commit)

        state_out = [session, *values]
        reference.change(h.upload_reference, [session, reference], [session, report, *values],
                         api_visibility="private", concurrency_limit=serving.PREVIEW_CONCURRENCY,
                         concurrency_id="preview").then(**live).then(**commit)
        for btn, fn, ins in ((reset_ref, h.reset_reference, [session]), (reset_neutral, h.reset_neutral, [session]),
                             (apply_pose, h.apply_pose_reference, [session, pose_photo, modes, *values]),
                             (load_preset, h.load_preset, [session, load_preset])):
            event = btn.upload if btn is load_preset else btn.click
            event(fn, ins, state_out, api_visibility="private").then(**live).then(**commit)

        flame_file.upload(h.install_flame, [session, flame_file], [session, report, status, *values],
                          api_visibility="private", concurrency_limit=1,
                          concurrency_id="install-flame").then(**live).then(**commit)
        # the fast preset (scheduler lcm) comes with its own steps and guidance
        scheduler.change(values_for_scheduler, [scheduler, steps, guidance], [steps, guidance],
                         show_progress="hidden", api_visibility="private")
        export.click(h.export, [session, *values], exported, api_visibility="private")
        generate.click(h.generate, [session, prompt, negative, seed, randomize, steps, guidance, strength, tau,
                                    num_images, resolution, scheduler, model, lora, lora_scale, *values], [gallery, used_seed],
                       api_visibility="private", concurrency_limit=serving.GENERATE_CONCURRENCY,
                       concurrency_id="gpu")
        demo.load(**live).then(**commit)
    return demo
