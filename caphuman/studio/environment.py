"""The status banner: device, weights present, active head model, and the fix for anything missing."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Environment:
    """device: "CPU" or the GPU's name; head: head description; weights: the generation folder or
    None; lines: (ok, text) per item, text carries the fix when not ok."""

    device: str
    head: str
    weights: str | None
    generation_ready: bool
    lines: list[tuple[bool, str]] = field(default_factory=list)
    readiness: str = ""

    def markdown(self) -> str:
        """The readiness line first (short), then device/head, the details folded."""
        first = f"**{self.readiness[:1].upper()}{self.readiness[1:]}**" if self.readiness else ""
        head = f"**Device:** {self.device} · **Head:** {self.head} · **Generation:** " + (
            f"ready ({Path(self.weights).name})" if self.generation_ready else "not available")
        items = "\n".join(f"- **{'ok' if ok else 'missing'}:** {text}" for ok, text in self.lines)
        details = f"\n\n<details><summary>Details</summary>\n\n{items}\n\n</details>" if items else ""
        return (first + "\n\n" if first else "") + head + details


def device_name(device: str) -> str:
    if device == "cuda":
        import torch

        try:
            return f"GPU {torch.cuda.get_device_name(0)}"
        except Exception:  # noqa: BLE001 - ZeroGPU: the GPU is attached per call
            return "GPU (ZeroGPU, attached per generation)"
    return "CPU"


def describe(device: str, head_description: str, head_kind: str, weights: str | None,
             generator_error: str | None, analysis: bool) -> Environment:
    """Collect the banner lines (cheap: file existence checks only)."""
    from caphuman.studio.generation import WEIGHTS_HINT

    lines: list[tuple[bool, str]] = []
    if head_kind == "flame":
        lines.append((True, f"head model: {head_description}"))
    else:
        from caphuman.head.flame_files import FLAME_HOWTO

        lines.append((True, f"head model: {head_description}. For a FLAME head: {FLAME_HOWTO}"))
    if analysis:
        lines.append((True, "photo analysis: installed"))
    else:
        lines.append((False, "photo analysis (caphuman.face) not installed: uploads are centre-cropped, the head is not fitted"))
    if weights is None:
        lines.append((False, "generation weights: not found. " + WEIGHTS_HINT))
    elif generator_error:
        lines.append((False, f"generation weights: {generator_error}"))
    else:
        tiny = weights and (Path(weights) / "TINY_MODEL.json").is_file()
        lines.append((True, f"generation weights: {Path(weights).name}" + (
            " (tiny RANDOM test model: images are noise-like by design)" if tiny else "")))
    readiness = ""
    try:
        from caphuman.weights.readiness import generation_readiness
        from caphuman.weights.registry import REGISTRY, local_path

        missing = [k for k in REGISTRY if not local_path(k).exists()]
        if missing:
            lines.append((False, f"checkpoints/ lacks: {', '.join(missing)} — see `python -m caphuman doctor`"))
        ready = generation_readiness(weights)
        readiness = ready.short()
        if not ready.ready:
            lines.insert(0, (False, "needed for generation: " + ", ".join(ready.missing)))
        if ready.ready and generator_error:  # files are there but loading failed / is still running
            readiness = f"ready to generate: not yet — {generator_error}"
    except Exception:  # noqa: BLE001 - the banner must never fail
        pass
    return Environment(device=device_name(device), head=head_description, weights=weights,
                       generation_ready=weights is not None and not generator_error, lines=lines,
                       readiness=readiness)
