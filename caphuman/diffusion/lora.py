"""LoRA adapters on a CapHumanPipeline (style LoRAs for the SD1.5 UNet / text encoder).

One adapter at a time: :func:`apply_lora` swaps the active one (or removes it) and sets its scale.
Needs the ``peft`` package (diffusers' LoRA backend). LoRA files are looked up by name in
``checkpoints/lora/`` (``*.safetensors``) or given as a path / Hub repo.
"""

from __future__ import annotations

import os
from pathlib import Path

from caphuman.errors import InputError, MissingWeightsError

ADAPTER = "user"
LORA_DIRNAME = "lora"


def lora_folder(root: str | os.PathLike | None = None) -> Path:
    from caphuman.weights.registry import checkpoints_root

    return (Path(root) if root else checkpoints_root()) / LORA_DIRNAME


def installed_loras(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the ``*.safetensors`` files in ``checkpoints/lora/`` (sorted)."""
    folder = lora_folder(root)
    return sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def resolve_lora(name_or_path: str, root: str | os.PathLike | None = None) -> str:
    """A file name in ``checkpoints/lora/``, a local path, or a Hub repo id, as a loadable string."""
    local = lora_folder(root) / name_or_path
    if local.is_file():
        return str(local)
    return name_or_path


def apply_lora(pipe, lora: str | None, scale: float = 1.0, active: str | None = None) -> str | None:
    """Make ``lora`` (None/"" = none) the pipeline's only adapter, at ``scale``; returns it.

    ``active``: what is loaded now (as returned by the previous call), so nothing is reloaded
    when only the scale changes.
    """
    lora = lora or None
    if lora != active and active is not None:
        pipe.delete_adapters([ADAPTER])
    if lora is None:
        return None
    if lora != active:
        try:
            import peft  # noqa: F401
        except ImportError:
            raise MissingWeightsError("LoRA needs the peft package: pip install peft") from None
        source = resolve_lora(lora)
        try:
            pipe.load_lora_weights(source, adapter_name=ADAPTER)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise InputError(f"cannot load LoRA {lora}: {str(exc).splitlines()[0][:200]}") from None
    pipe.set_adapters([ADAPTER], adapter_weights=[float(scale)])
    return lora
