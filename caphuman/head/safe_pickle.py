"""Restricted unpickling for the licence-gated head files (FLAME ``.pkl``, DECA ``.npy`` dicts).

A pickle is a program: ``pickle.load`` runs whatever callables the file names. These loaders use
an explicit allow-list instead. Only the globals below are resolved, each to a function that
builds plain data; any other global raises :class:`~caphuman.errors.UnsafePickleError` before
anything is called. chumpy is never imported: its ``Ch`` objects become :class:`ChumpyStub`,
which just keeps the stored array. torch tensors pickled inside DECA's ``landmark_embedding.npy``
are rebuilt through ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import ast
import io
import pickle
import struct
from typing import Any, BinaryIO

import numpy as np

from caphuman.errors import InputError, UnsafePickleError


class ChumpyStub:
    """Stand-in for chumpy objects: remembers the array a ``Ch`` carried, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_args"] = args
        self.__dict__["_state"] = {}

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state if isinstance(state, dict) else {"x": state}

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD may set attributes directly
        self.__dict__["_state"][name] = value

    def to_array(self) -> np.ndarray:
        state = self.__dict__["_state"]
        for key in ("x", "a", "_x"):
            if key in state and isinstance(state[key], (np.ndarray, list, tuple, float, int)):
                return np.asarray(state[key])
        args = self.__dict__["_args"]
        if args and isinstance(args[0], np.ndarray):
            return args[0]
        raise InputError(
            "a chumpy object in this pickle stores no plain array (it is a derived expression); "
            "re-save the model with plain numpy arrays")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """Safe version of ``copyreg._reconstructor``: only allow-listed classes over ``object``."""
    if base is not object:
        raise UnsafePickleError(f"pickle asks to construct {cls!r} over base {base!r}; refused")
    if cls is ChumpyStub:
        return ChumpyStub()
    if isinstance(cls, type) and cls in _SPARSE_CLASSES():
        return object.__new__(cls)
    raise UnsafePickleError(f"pickle asks to construct {cls!r}; refused")


def _SPARSE_CLASSES() -> tuple[type, ...]:
    import scipy.sparse as sp

    return (sp.csc_matrix, sp.csr_matrix, sp.coo_matrix)


def _sparse_class(name: str) -> type:
    import scipy.sparse as sp

    return {"csc_matrix": sp.csc_matrix, "csr_matrix": sp.csr_matrix, "coo_matrix": sp.coo_matrix}[name]


def _safe_load_from_bytes(data: bytes) -> Any:
    """torch storages pickled inside plain pickles: load them with ``weights_only=True``."""
    import torch

    try:
        return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")
    except Exception as exc:  # weights_only refusal or corrupt payload
        raise UnsafePickleError(f"embedded torch storage could not be loaded safely: {exc}") from None


def _rebuild_tensor_v2(storage: Any, offset: int, size: Any, stride: Any, *_: Any) -> Any:
    import torch

    t = torch.empty((0,), dtype=storage.dtype)
    t.set_(storage, offset, tuple(size), tuple(stride))
    return t


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles written by Python 3 store bytes as ``_codecs.encode(str, 'latin1')``."""
    if not isinstance(text, str) or encoding.lower().replace("-", "") not in ("latin1", "utf8"):
        raise UnsafePickleError("pickle asks for an unexpected codec call; refused")
    return text.encode(encoding)


def _numpy_global(module: str, name: str) -> Any:
    if module.startswith(("numpy.core.multiarray", "numpy._core.multiarray")):
        from numpy._core import multiarray

        if name in ("_reconstruct", "scalar"):
            return getattr(multiarray, name)
    if module in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray") and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module in ("numpy.dtypes",) and name.endswith("DType"):
        import numpy.dtypes

        return getattr(numpy.dtypes, name)
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler with an explicit allow-list (numpy arrays, scipy sparse, chumpy stubs, torch tensors)."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        found = _numpy_global(module, name)
        if found is not None:
            return found
        if module.split(".")[0] == "chumpy":
            return ChumpyStub
        if module in ("copy_reg", "copyreg") and name == "_reconstructor":
            return _reconstructor
        if module == "_codecs" and name == "encode":
            return _codecs_encode
        if module in ("__builtin__", "builtins") and name == "object":
            return object
        if module in ("collections",) and name == "OrderedDict":
            import collections

            return collections.OrderedDict
        if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
            return _sparse_class(name)
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return _rebuild_tensor_v2
        if module == "torch.storage" and name == "_load_from_bytes":
            return _safe_load_from_bytes
        raise UnsafePickleError(f"refusing to load {module}.{name} from a pickle (not on the allow-list)")


def safe_unpickle(stream: BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle from ``stream`` with the allow-list; return plain Python/numpy data."""
    try:
        return RestrictedUnpickler(stream, encoding=encoding).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise InputError(f"corrupt or unsupported pickle: {exc}") from None


def load_pickle_file(path: Any) -> Any:
    """Unpickle a file safely (``.pkl`` FLAME models are latin-1 Python 2 pickles)."""
    with open(path, "rb") as fh:
        return safe_unpickle(fh)


def load_npy_file(path: Any) -> Any:
    """Load a ``.npy`` file; object arrays (pickled dicts) go through the restricted unpickler.

    Returns the array, or for a 0-d object array its single item (DECA stores dicts that way).
    """
    with open(path, "rb") as fh:
        magic = fh.read(6)
        if magic != b"\x93NUMPY":
            raise InputError(f"{path}: not a .npy file")
        major = fh.read(2)[0]
        hlen_size = 2 if major == 1 else 4
        raw = fh.read(hlen_size)
        if len(raw) != hlen_size:
            raise InputError(f"{path}: truncated .npy header")
        (hlen,) = struct.unpack("<H" if hlen_size == 2 else "<I", raw)
        header_text = fh.read(hlen).decode("latin1")
        try:
            header = ast.literal_eval(header_text)
        except (ValueError, SyntaxError):
            raise InputError(f"{path}: malformed .npy header") from None
        if not isinstance(header, dict) or "descr" not in header:
            raise InputError(f"{path}: malformed .npy header")
        if header["descr"] != "|O":
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
        obj = safe_unpickle(fh)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()
    return obj


def to_numpy(value: Any) -> Any:
    """Turn chumpy stubs, scipy sparse matrices and torch tensors into numpy arrays (recursively)."""
    if isinstance(value, ChumpyStub):
        return value.to_array()
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        return np.asarray(value.toarray())
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return value
