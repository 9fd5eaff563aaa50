"""LoRA adapters on a CapHumanPipeline: a user style LoRA and the fast preset's LCM-LoRA, side by side.

Two named adapters, each optional, combined with ``set_adapters``:

* ``user``: a style LoRA for the SD1.5 UNet / text encoder, swapped by :func:`apply_lora` (one at a
  time) at a user-chosen scale. Files are looked up by name in ``checkpoints/lora/`` (``*.safetensors``)
  or given as a path / Hub repo.
* ``fast``: the LCM-LoRA of the fast preset (:mod:`caphuman.diffusion.presets`), switched on and off by
  :func:`apply_fast_lora`. It stays loaded once used (switching back to the original sampler only
  deactivates it); :func:`fuse_fast_lora` merges it into the UNet weights for one-shot runs.

With no adapter active the LoRA layers are disabled and every layer computes its base weights only.
Needs the ``peft`` package (diffusers' LoRA backend).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from caphuman.errors import InputError, MissingWeightsError

USER_ADAPTER = "user"
FAST_ADAPTER = "fast"
ADAPTER = USER_ADAPTER  # the name before the fast adapter existed
LORA_DIRNAME = "lora"


def lora_folder(root: str | os.PathLike | None = None) -> Path:
    from caphuman.weights.registry import checkpoints_root

    return (Path(root) if root else checkpoints_root()) / LORA_DIRNAME


def installed_loras(root: str | os.PathLike | None = None) -> list[str]:
    """Names of the ``*.safetensors`` files in ``checkpoints/lora/`` (sorted; sub-folders such as
    ``lora/fast/`` are not style LoRAs and are not listed)."""
    folder = lora_folder(root)
    return sorted(p.name for p in folder.glob("*.safetensors")) if folder.is_dir() else []


def resolve_lora(name_or_path: str, root: str | os.PathLike | None = None) -> str:
    """A file name in ``checkpoints/lora/``, a local path, or a Hub repo id, as a loadable string."""
    local = lora_folder(root) / name_or_path
    if local.is_file():
        return str(local)
    return name_or_path


# ---------------------------------------------------------------------------- adapter bookkeeping
def _state(pipe) -> dict:
    """Per-pipeline record: ``loaded`` adapter names, ``weights`` of the active ones, ``fused`` names."""
    state = pipe.__dict__.get("_caphuman_lora")
    if state is None:
        state = {"loaded": set(), "weights": {}, "fused": set()}
        pipe.__dict__["_caphuman_lora"] = state
    return state


def active_adapters(pipe) -> dict[str, float]:
    """Active adapter name -> scale (empty: base model)."""
    return dict(_state(pipe)["weights"])


def _load(pipe, source: str, name: str, label: str) -> None:
    try:
        import peft  # noqa: F401
    except ImportError:
        raise MissingWeightsError("LoRA needs the peft package: pip install peft") from None
    import torch

    nhwc = pipe.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    try:
        with warnings.catch_warnings():  # "multiple adapters in the model": intended here
            warnings.filterwarnings("ignore", message="Already found a `peft_config`", category=UserWarning)
            pipe.load_lora_weights(source, adapter_name=name)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise InputError(f"cannot load LoRA {label}: {str(exc).splitlines()[0][:200]}") from None
    if nhwc:  # new LoRA convolutions in the UNet's memory format (set by acceleration.configure_pipeline)
        pipe.unet.to(memory_format=torch.channels_last)
    _state(pipe)["loaded"].add(name)


def _unload(pipe, name: str) -> None:
    state = _state(pipe)
    if name in state["loaded"]:
        with warnings.catch_warnings():  # "setting active adapter to ...": _activate decides right after
            warnings.filterwarnings("ignore", message="Adapter .* was active which is now deleted",
                                    category=UserWarning)
            pipe.delete_adapters([name])
        state["loaded"].discard(name)
    state["weights"].pop(name, None)


def _activate(pipe) -> None:
    """Make exactly the adapters in ``weights`` active, at their scales (none: LoRA layers disabled)."""
    state = _state(pipe)
    if not state["loaded"]:
        return
    weights = {k: v for k, v in state["weights"].items() if k in state["loaded"] and k not in state["fused"]}
    if not weights:
        if not state["fused"]:
            pipe.disable_lora()
        return
    pipe.enable_lora()
    pipe.set_adapters(list(weights), adapter_weights=list(weights.values()))


# ---------------------------------------------------------------------------- public
def apply_lora(pipe, lora: str | None, scale: float = 1.0, active: str | None = None) -> str | None:
    """Make ``lora`` (None/"" = none) the pipeline's user LoRA, at ``scale``; returns it.

    ``active``: the user LoRA loaded now (as returned by the previous call), so nothing is reloaded
    when only the scale changes. The fast adapter, if active, stays active.
    """
    lora = lora or None
    state = _state(pipe)
    if lora != active and active is not None:
        _unload(pipe, USER_ADAPTER)
    if lora is not None:
        if lora != active or USER_ADAPTER not in state["loaded"]:
            _load(pipe, resolve_lora(lora), USER_ADAPTER, lora)
        state["weights"][USER_ADAPTER] = float(scale)
    _activate(pipe)
    return lora


def apply_fast_lora(pipe, enabled: bool, path: str | os.PathLike | None = None) -> bool:
    """Switch the fast preset's LCM-LoRA on or off; returns ``enabled``.

    ``path``: the LoRA file (default: the registry's, :func:`caphuman.diffusion.presets.require_fast_lora`,
    which raises :class:`MissingWeightsError` naming ``python -m caphuman download fast`` when absent).
    It is loaded on the first ``enabled`` call and kept: later calls only (de)activate it.
    """
    state = _state(pipe)
    if FAST_ADAPTER in state["fused"]:
        if not enabled:
            raise InputError("the fast LoRA is fused into this pipeline's UNet; reload the pipeline to turn it off")
        return True
    if enabled:
        if FAST_ADAPTER not in state["loaded"]:
            from caphuman.diffusion.presets import require_fast_lora

            source = Path(path) if path is not None else require_fast_lora()
            _load(pipe, str(source), FAST_ADAPTER, f"{source} (fast preset)")
        state["weights"][FAST_ADAPTER] = 1.0
    else:
        state["weights"].pop(FAST_ADAPTER, None)
    _activate(pipe)
    return enabled


def fuse_fast_lora(pipe) -> None:
    """Merge the active fast adapter into the UNet/text-encoder weights (no per-layer LoRA cost).

    For one-shot runs only (the CLI): it cannot be turned off again, and it is refused while a user
    LoRA is loaded (merged layers would skip an unmerged adapter)."""
    state = _state(pipe)
    if FAST_ADAPTER not in state["weights"]:
        raise InputError("fuse_fast_lora: the fast LoRA is not active")
    if USER_ADAPTER in state["loaded"]:
        raise InputError("fuse_fast_lora: not with a user LoRA loaded")
    pipe.fuse_lora(adapter_names=[FAST_ADAPTER], lora_scale=1.0)
    state["fused"].add(FAST_ADAPTER)
