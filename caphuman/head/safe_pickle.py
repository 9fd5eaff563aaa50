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


def _bytes(*args: Any) -> bytes:
    """``bytes()`` / ``bytes(str, 'latin1')`` as protocol-2 pickles write them (an empty array's data)."""
    if not args:
        return b""
    if len(args) == 2:
        return _codecs_encode(*args)
    raise UnsafePickleError("pickle asks for bytes() with unexpected arguments; refused")


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
        if module in ("__builtin__", "builtins") and name == "bytes":
            return _bytes
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


class _BoundedStream:
    """A file the unpickler reads through: a read larger than what is left of the file (a declared
    length such as BINUNICODE8's 2**62) is refused before anything is allocated for it."""

    def __init__(self, stream: BinaryIO) -> None:
        import os

        self._stream = stream
        try:
            self._end = os.fstat(stream.fileno()).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):
            pos = stream.tell()
            self._end = stream.seek(0, io.SEEK_END)
            stream.seek(pos)

    def _check(self, n: int) -> None:
        left = self._end - self._stream.tell()
        if n is not None and n > max(left, 0):
            raise InputError(f"corrupt pickle: an item declares {n:,} bytes but only {max(left, 0):,} are left "
                             "in the file")

    def read(self, n: int = -1) -> bytes:
        if n is not None and n >= 0:
            self._check(n)
        return self._stream.read(n)

    def readinto(self, buffer: Any) -> int:
        self._check(len(memoryview(buffer)))
        return self._stream.readinto(buffer)

    def readline(self, limit: int = -1) -> bytes:
        return self._stream.readline(limit)

    def peek(self, n: int = 0) -> bytes:
        peek = getattr(self._stream, "peek", None)
        return peek(n) if peek is not None else b""


def safe_unpickle(stream: BinaryIO, encoding: str = "latin1") -> Any:
    """Unpickle from ``stream`` with the allow-list; return plain Python/numpy data. Declared sizes
    beyond the file and absurd nesting are corrupt-file errors, not allocations or crashes."""
    try:
        return RestrictedUnpickler(_BoundedStream(stream), encoding=encoding).load()
    except (UnsafePickleError, InputError):
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
            OverflowError) as exc:
        raise InputError(f"corrupt or unsupported pickle: {str(exc)[:200]}") from None
    except (MemoryError, RecursionError) as exc:
        raise InputError(f"corrupt pickle: it asks for more than a model file can hold ({type(exc).__name__})") \
            from None


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
            try:  # a declared shape beyond the data is a short read, refused; never a huge allocation
                return np.load(fh, allow_pickle=False)
            except (ValueError, OSError, EOFError, TypeError, MemoryError) as exc:
                raise InputError(f"{path}: a corrupt or truncated .npy file ({str(exc)[:120]})") from None
        obj = safe_unpickle(fh)
    if isinstance(obj, np.ndarray) and obj.dtype == object and obj.shape == ():
        return obj.item()
    return obj


#: A sparse matrix from a file becomes dense only up to this many cells (FLAME's J_regressor: 5 x 5023).
MAX_DENSE_CELLS = 50_000_000


def _sparse_to_dense(value: Any) -> np.ndarray:
    """A pickled scipy sparse matrix rebuilt through scipy's checking constructors, then made dense;
    a declared shape beyond :data:`MAX_DENSE_CELLS` or inconsistent index arrays are refused."""
    import scipy.sparse as sp

    state = getattr(value, "__dict__", {})
    shape = state.get("_shape", state.get("shape"))
    try:
        rows, cols = (int(d) for d in shape)
    except (TypeError, ValueError):
        raise InputError("corrupt pickle: a sparse matrix without a valid shape") from None
    if rows < 0 or cols < 0 or rows * cols > MAX_DENSE_CELLS:
        raise InputError(f"corrupt or foreign pickle: a sparse matrix declares {rows:,} x {cols:,} cells "
                         f"(a model file's have at most {MAX_DENSE_CELLS:,})")
    try:
        if isinstance(value, sp.coo_matrix):
            rebuilt = sp.coo_matrix((np.asarray(state["data"]), (np.asarray(state["row"]), np.asarray(state["col"]))),
                                    shape=(rows, cols))
        else:
            cls = sp.csc_matrix if isinstance(value, sp.csc_matrix) else sp.csr_matrix
            rebuilt = cls((np.asarray(state["data"]), np.asarray(state["indices"]), np.asarray(state["indptr"])),
                          shape=(rows, cols))
            rebuilt.check_format(full_check=True)
        return np.asarray(rebuilt.toarray())
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise InputError(f"corrupt pickle: an inconsistent sparse matrix ({str(exc)[:120]})") from None


def to_numpy(value: Any) -> Any:
    """Turn chumpy stubs, scipy sparse matrices and torch tensors into numpy arrays (recursively)."""
    if isinstance(value, ChumpyStub):
        return value.to_array()
    if isinstance(value, dict):
        return {k: to_numpy(v) for k, v in value.items()}
    if isinstance(value, _SPARSE_CLASSES()):
        return _sparse_to_dense(value)
    if hasattr(value, "toarray") and hasattr(value, "nnz"):
        return np.asarray(value.toarray())
    if type(value).__module__.startswith("torch"):
        return value.detach().cpu().numpy()
    return value
