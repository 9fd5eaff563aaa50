"""Safe loading of PyTorch checkpoints (they are pickles: treat them as code).

First ``torch.load(weights_only=True)``, which only rebuilds tensors, containers and plain values.
When that refuses the file (Lightning checkpoints carry callbacks, omegaconf configs, numpy
scalars ...), it is read again through :mod:`caphuman.weights.checkpoint_unpickler`: tensors and
plain data are rebuilt, every other class is replaced by an inert placeholder and nothing from
the file is imported or executed. Files that still cannot be read raise
:class:`~caphuman.errors.InputError`; records the restricted unpickler will not rebuild raise
:class:`~caphuman.errors.UnsafePickleError`.
"""

from __future__ import annotations

import logging
import os
import zipfile
from pathlib import Path
from typing import Any, Callable, Iterable

from caphuman.errors import CapHumanError, InputError, MissingWeightsError, UnsafePickleError

_LOG = logging.getLogger("caphuman.weights")


def missing_message(path: Path, key: str | None) -> str:
    """One line saying which file is missing and where to get it (from the registry)."""
    if key is None:
        return f"{path}: model file not found"
    from caphuman.weights.registry import REGISTRY, where_to_get

    w = REGISTRY[key]
    return f"{path}: {w.description} not found (needed for {w.needed_for}); {where_to_get(key)}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _unreadable(path: Path, exc: BaseException) -> InputError:
    return InputError(f"{path}: not a readable PyTorch checkpoint ({_first_line(exc)}); "
                      "the file may be truncated or corrupted: download it again")


def _is_torchscript(path: Path) -> bool:
    """A TorchScript archive (``torch.load`` would hand it to ``torch.jit.load``)."""
    try:
        with zipfile.ZipFile(path) as zf:
            return any(name.split("/")[1:] == ["constants.pkl"] for name in zf.namelist())
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def read_checkpoint(path: Path, mmap: bool = False) -> tuple[Any, bool]:
    """``(object, restricted)`` from a torch pickle on the CPU.

    ``restricted`` is True when ``weights_only=True`` refused the file and the restricted
    unpickler read it (its foreign objects are :class:`~caphuman.weights.checkpoint_unpickler.Neutralised`).
    ``mmap``: map the file instead of reading the storages (zip-format checkpoints only): tensors are
    read when first touched, so a caller that uses a few of them reads only those.
    """
    import pickle

    import torch

    try:
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap), False
    except pickle.UnpicklingError:
        pass  # retried below, outside this block, so the refused attempt's tensors are freed first
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from None
    if os.getenv("TORCH_FORCE_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes", "true"):
        raise UnsafePickleError(f"{path}: holds more than weights_only=True allows, and "
                                "TORCH_FORCE_WEIGHTS_ONLY_LOAD forbids any other unpickler; refused")
    if _is_torchscript(path):
        raise UnsafePickleError(f"{path}: a TorchScript archive, not a checkpoint; refused without loading it")
    from caphuman.weights import checkpoint_unpickler

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False, pickle_module=checkpoint_unpickler,
                         mmap=mmap)
    except CapHumanError:
        raise
    except Exception as exc:  # corrupt data surfaces as any error type of torch's/pickle's own code
        raise _unreadable(path, exc) from None
    return obj, True


def _describe(label: str, value: Any) -> tuple[str, bool]:
    """``(label, holds_neutralised)``, the label naming the first neutralised classes inside ``value``."""
    from caphuman.weights.checkpoint_unpickler import neutralised_names

    names = neutralised_names(value)
    if not names:
        return label, False
    return f"{label} ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})", True


def _neutralised_note(path: Path, obj: Any) -> str | None:
    from caphuman.weights.checkpoint_unpickler import neutralised_names

    names = neutralised_names(obj)
    if not names:
        return None
    shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    return f"{path.name}: foreign objects neutralised (not imported, not run) and dropped: {shown}"


def load_torch_file(path: str | os.PathLike, key: str | None = None,
                    log: Callable[[str], Any] | None = None) -> Any:
    """Load a ``.pt/.pth/.tar/.ckpt`` on the CPU: ``weights_only=True``, else the restricted unpickler.

    Returns the loaded object. After the restricted unpickler, neutralised objects are removed
    from its dicts, lists and tuples, and ``log`` (default: the ``caphuman.weights`` logger)
    gets one line naming them. ``key``: registry key, used only to word the missing-file error.
    """
    from caphuman.weights.checkpoint_unpickler import strip_neutralised

    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(missing_message(path, key))
    obj, restricted = read_checkpoint(path)
    if restricted:
        note = _neutralised_note(path, obj)
        if note:
            (log or _LOG.warning)(note)
        obj = strip_neutralised(obj)
    return obj


def _join(labels: list[str], limit: int = 12) -> str:
    more = f" and {len(labels) - limit} more" if len(labels) > limit else ""
    return (", ".join(labels[:limit]) or "nothing") + more


def split_state_dict(obj: Any) -> tuple[dict, list[str]]:
    """``(tensors, ignored)``: the ``str -> Tensor`` entries of ``obj["state_dict"]`` (or of ``obj``
    itself when it is a bare state dict), and one label per other entry, naming neutralised classes
    (those entries first)."""
    import torch

    if not isinstance(obj, dict):
        return {}, [_describe(type(obj).__name__, obj)[0]]
    sd = obj.get("state_dict")
    if isinstance(sd, dict):
        described = [_describe(str(k), v) for k, v in obj.items() if k != "state_dict"]
        where = "state_dict[{!r}]"
    else:
        sd, described, where = obj, [], "{!r}"
    tensors = {}
    for k, v in sd.items():
        if isinstance(k, str) and isinstance(v, torch.Tensor):
            tensors[k] = v
        else:
            described.append(_describe(where.format(k), v))
    return tensors, [label for label, _ in sorted(described, key=lambda d: not d[1])]


def load_checkpoint_state_dict(path: str | os.PathLike, key: str | None = None,
                               log: Callable[[str], Any] | None = None, mmap: bool = False) -> dict:
    """The tensors of a checkpoint's ``state_dict`` (Lightning) or of a bare state dict.

    Non-tensor extras (``callbacks``, ``hyper_parameters``, ``optimizer_states``, ``global_step`` ...)
    are dropped and reported to ``log`` (default: the ``caphuman.weights`` logger) in one line.
    Raises :class:`InputError` when no tensors are found. ``mmap``: see :func:`read_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingWeightsError(missing_message(path, key))
    obj, restricted = read_checkpoint(path, mmap=mmap)
    tensors, ignored = split_state_dict(obj)
    if not tensors:
        raise InputError(f"{path}: no state dict of tensors found in this checkpoint (it holds: {_join(ignored)})")
    if ignored:
        how = " (read with the restricted unpickler; nothing was run)" if restricted else ""
        (log or _LOG.info)(f"{path.name}: ignored non-tensor extras{how}: {_join(ignored)}")
    return tensors


def load_pretrained(loader: Callable[..., Any], source: str | os.PathLike, what: str, **kwargs: Any) -> Any:
    """``loader(source, **kwargs)`` for a transformers/diffusers ``from_pretrained``, with its failures
    as one clear line: a ``pytorch_model.bin`` that ``weights_only=True`` refuses (a pickle that would
    run code) is an :class:`UnsafePickleError` (nothing from it ran), a missing or damaged folder an
    :class:`InputError` naming ``what`` and ``source``."""
    import pickle

    try:
        return loader(str(source), **kwargs)
    except CapHumanError:
        raise
    except pickle.UnpicklingError:
        raise UnsafePickleError(f"{what} at {source}: its pytorch_model.bin is a pickle that holds more than "
                                "weights (it could run code); refused without running it. Use a copy with "
                                "model.safetensors") from None
    except (OSError, ValueError, KeyError, EOFError, RuntimeError) as exc:
        raise InputError(f"cannot load the {what} from {source}: {_first_line(exc)}") from None


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
