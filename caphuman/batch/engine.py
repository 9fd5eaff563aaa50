"""The models of a batch run and the three things the runner asks of them.

* :meth:`Engine.reference`: a job's reference photo analysed once per (photo, size, pose photo) -- head
  fit and output frame, as ``generate --reference`` does (:func:`caphuman.conditioning.reference_head`) --
  plus its identity (FaceNet embedding and CLIP-vision tokens of the face-only image), encoded once per
  photo. Both are kept in small LRU caches, so a dataset of many jobs per photo analyses each photo once.
* :meth:`Engine.hint`: the 9-channel hint of a head state in that frame (:class:`HeadPreviewPipeline`).
* :meth:`Engine.generate`: one :class:`CapHumanPipeline` call for a batch of images of the same size and
  sampler settings; prompts, hints, identities and seeds may differ per image. Every image gets its own
  CPU ``torch.Generator`` seeded with its seed, so it does not depend on the rest of the batch (on the CPU
  the images are bit-identical to one-image calls; on a GPU equal up to kernel rounding).
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


#: Reference analyses / identities kept (frames are size x size x 3 uint8; CLIP tokens ~1 MB each).
ANALYSIS_CACHE = 64
IDENTITY_CACHE = 256


@dataclass
class Reference:
    """A job's reference, ready for generation: ``head`` (:class:`caphuman.conditioning.ReferenceHead`:
    fitted state, frame, analysis), ``id_embedding`` (1, 512) and ``image_embeds`` (1, T, D) on the
    pipeline's device, and ``warnings`` from the analysis."""

    head: Any
    id_embedding: Any
    image_embeds: Any
    warnings: list[str]


class _LRU(OrderedDict):
    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or(self, key, make):
        if key in self:
            self.move_to_end(key)
            return self[key]
        value = make()
        self[key] = value
        while len(self) > self.size:
            self.popitem(last=False)
        return value


class Engine:
    """``weights``: a converted CapHuman folder; ``accel``: :class:`caphuman.diffusion.acceleration.Acceleration`;
    ``head``: ``auto`` | ``builtin`` | PATH. ``pipe`` / ``identity``: already-built models (benchmarks, tests)."""

    def __init__(self, weights: str | Path | None, accel, head: str = "auto", pipe=None, identity=None):
        self.weights = None if weights is None else Path(weights)
        self.accel = accel
        self.head_name = head
        self.pipe, self.identity = pipe, identity
        self.head_pipeline = None
        self.head_description = ""
        self._settings: tuple | None = None
        self._lora: str | None = None
        self._analyses = _LRU(ANALYSIS_CACHE)
        self._identities = _LRU(IDENTITY_CACHE)
        self._lock = threading.Lock()
        self.device = None  # the pipeline's execution device, found once (diffusers walks every module for it)
        self.timings = {"load": 0.0, "analysis": 0.0, "identity": 0.0, "render": 0.0, "pipeline": 0.0}
        self.pipeline_calls = 0

    # ------------------------------------------------------------------ loading
    def load(self, log=None) -> "Engine":
        from caphuman.conditioning import identity_encoder_for
        from caphuman.diffusion.acceleration import configure_pipeline
        from caphuman.diffusion.loading import load_pipeline, require_converted
        from caphuman.head.resolve import load_head
        from caphuman.preview import HeadPreviewPipeline

        t0 = time.perf_counter()
        head = load_head(self.head_name)
        self.head_description = head.description
        self.head_pipeline = HeadPreviewPipeline(head.data)
        from caphuman.controls.state import HeadState

        self.head_pipeline.hint(HeadState(), 64)  # loads the renderer's compiled kernels now, not in the first job
        if self.pipe is None:
            require_converted(self.weights)
            self.pipe = load_pipeline(self.weights, self.accel.load_dtype())  # names a broken file
            configure_pipeline(self.pipe, self.accel)
        self.pipe.set_progress_bar_config(disable=True)
        self.device = self.pipe._execution_device
        if self.identity is None:
            self.identity = identity_encoder_for(self.weights, device=self.accel.device)
        self.timings["load"] += time.perf_counter() - t0
        if log:
            log(f"head: {head.description}")
        return self

    # ------------------------------------------------------------------ per job
    def configure(self, job) -> None:
        """Scheduler and LoRAs for ``job``'s settings (only when they change between batches)."""
        key = job.settings_key()
        if key == self._settings:
            return
        from caphuman.diffusion.lora import apply_fast_lora, apply_lora
        from caphuman.diffusion.presets import uses_fast_lora
        from caphuman.diffusion.schedulers import make_scheduler

        p = job.params
        self.pipe.scheduler = make_scheduler(p.scheduler, like=self.pipe.scheduler)
        self._lora = apply_lora(self.pipe, p.lora, p.lora_scale, active=self._lora)
        apply_fast_lora(self.pipe, uses_fast_lora(p.scheduler))
        self._settings = key

    def reference(self, job) -> Reference:
        """The job's analysed reference and identity (cached; thread-safe)."""
        size = job.resolution
        key = (job.reference, job.reference_sha, size, job.pose_reference, job.modes if job.pose_reference else None)
        with self._lock:
            head = self._analyses.get_or(key, lambda: self._analyse(job, size))
            ident = self._identities.get_or((job.reference, job.reference_sha), lambda: self._encode(job.reference))
        return Reference(head=head, id_embedding=ident[0], image_embeds=ident[1],
                         warnings=list(head.analysis.warnings))

    def _analyse(self, job, size):
        from caphuman.conditioning import reference_head

        t0 = time.perf_counter()
        try:
            return reference_head(self.head_pipeline, job.reference, size, job.pose_reference,
                                  job.modes, notes=None)
        finally:
            self.timings["analysis"] += time.perf_counter() - t0

    def _encode(self, path: str):
        import torch
        from PIL import Image

        from caphuman.face.intake import load_image

        t0 = time.perf_counter()
        try:
            ident = self.identity.encode_identity(Image.fromarray(load_image(path)))
            with torch.no_grad():
                tokens = self.pipe.encode_face_image(ident.face_only_image, self.device)
            return torch.as_tensor(ident.id_embedding).to(self.device), tokens
        finally:
            self.timings["identity"] += time.perf_counter() - t0

    def hint(self, state, size: int) -> np.ndarray:
        """(9, size, size) float32 hint of a validated ``state`` (the array ``generate`` renders)."""
        t0 = time.perf_counter()
        try:
            return self.head_pipeline.hint(state, size, validate=False)
        finally:
            self.timings["render"] += time.perf_counter() - t0

    # ------------------------------------------------------------------ the batched call
    def generate(self, job, items: list[dict]) -> np.ndarray:
        """One pipeline call. ``job``: any job of the batch (they share its settings). ``items``: dicts with
        ``prompt``, ``negative_prompt``, ``hint``, ``reference`` (:class:`Reference`) and ``seed``.
        Returns uint8 (N, H, W, 3)."""
        import torch

        self.configure(job)
        p = job.params
        device = self.device
        hints = torch.stack([torch.as_tensor(it["hint"]) for it in items])
        ids = torch.cat([it["reference"].id_embedding.to(device) for it in items])
        tokens = torch.cat([it["reference"].image_embeds.to(device) for it in items])
        gens = [torch.Generator("cpu").manual_seed(int(it["seed"])) for it in items]
        t0 = time.perf_counter()
        out = self.pipe([it["prompt"] for it in items], hints, ids, image_embeds=tokens,
                        negative_prompt=[it["negative_prompt"] for it in items], num_images=len(items),
                        num_inference_steps=p.steps, guidance_scale=p.guidance, strength=p.strength, tau=p.tau,
                        generator=gens, output_type="np")
        if self.accel.device == "cuda":
            torch.cuda.synchronize()
        self.timings["pipeline"] += time.perf_counter() - t0
        self.pipeline_calls += 1
        return np.asarray(out.images)

    # ------------------------------------------------------------------ checks
    def check(self, image: np.ndarray, state, reference: Reference) -> dict:
        """Pose asked vs estimated and identity similarity of one image (``--check``)."""
        from caphuman.face.output_check import OutputChecker

        checker = OutputChecker(requested=state, target=self.head_pipeline, reference=reference.head.analysis,
                                identity_encoder=self.identity)
        return checker.check(image).to_dict()


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__ = ["Engine", "Reference", "log_stderr"]
