"""Safe loading of PyTorch checkpoints (they are pickles: treat them as code).

``torch.load(weights_only=True)`` only rebuilds tensors, containers and plain values; a pickle
asking for anything else (a ``__reduce__`` that would run code) is refused before it runs and
reported as :class:`~caphuman.errors.UnsafePickleError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

from caphuman.errors import InputError, MissingWeightsError, UnsafePickleError


def missing_message(path: Path, key: str | None) -> str:
    """One line saying which file is missing and where to get it (from the registry)."""
    if key is None:
        return f"{path}: model file not found"
    from caphuman.weights.registry import REGISTRY

    w = REGISTRY[key]
    where = w.manual_url or (f"huggingface.co/{w.hub_repo}" if w.hub_repo else "see the doctor")
    return f"{path}: {w.description} not found (needed for {w.needed_for}); get it from {where}"


def load_torch_file(path: str | os.PathLike, key: str | None = None) -> Any:
    """Load a ``.pt/.pth/.tar/.ckpt`` on the CPU with ``weights_only=True``.

    ``key``: registry key, used only to word the missing-file error.
    """
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(missing_message(path, key))
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unsupported object"
        raise UnsafePickleError(
            f"{path}: refused to unpickle (it asks for objects outside the safe tensor allow-list: "
            f"{first}); nothing from it was executed") from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise InputError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None


def load_state_strict(module, state: dict, what: str,
                      optional_suffixes: Iterable[str] = ("num_batches_tracked",)) -> None:
    """``module.load_state_dict(state, strict=True)`` except that keys ending in
    ``optional_suffixes`` (BatchNorm step counters, absent from checkpoints saved by old torch)
    may be missing. Any other mismatch raises InputError listing a few keys."""
    own = module.state_dict()
    state = dict(state)
    for k, v in own.items():
        if k not in state and any(k.endswith(s) for s in optional_suffixes):
            state[k] = v
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad_shape = sorted(k for k in set(own) & set(state)
                       if tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape))
    if missing or unexpected or bad_shape:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("wrong shape", bad_shape)):
            if keys:
                parts.append(f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})")
        raise InputError(f"{what}: checkpoint does not match the network: " + "; ".join(parts))
    module.load_state_dict(state, strict=True)
