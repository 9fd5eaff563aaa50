"""Restricted unpickler for PyTorch checkpoints that carry more than tensors (Lightning extras).

Use this module itself as ``pickle_module``::

    torch.load(path, map_location="cpu", weights_only=False, pickle_module=checkpoint_unpickler)

torch subclasses :class:`Unpickler`, calls :func:`load` and installs its own ``persistent_load``
(storage records). :meth:`Unpickler.find_class` resolves only what rebuilds tensors, numpy
values and plain containers (:func:`allowed_globals`); every other global -- ``pytorch_lightning``
callbacks, omegaconf configs, ``os.system``, ``builtins.eval`` -- becomes a fresh subclass of
:class:`Neutralised`, which is never imported and only records what the pickle asked for.
Persistent ids other than torch's storage records are refused or neutralised the same way.
The invariant: every object ``find_class`` hands out is safe to call with any arguments (it
runs no code named by the file and allocates nothing the file does not contain).
"""

from __future__ import annotations

import collections
import pickle
import re
from typing import Any, Iterator

from caphuman.errors import UnsafePickleError

__all__ = ["Unpickler", "load", "Neutralised", "allowed_globals", "is_neutralised", "neutralised_names",
           "strip_neutralised"]


class Neutralised:
    """Inert stand-in for a global outside the allow-list: records what the pickle asked for.

    Construction (REDUCE, NEWOBJ, NEWOBJ_EX), BUILD, SETITEMS and APPENDS only store their
    arguments; calling an instance returns another inert instance. Subclasses are made by
    :func:`_neutralised_class` with the global's ``foreign_module`` and ``foreign_name``.
    """

    foreign_module = "?"
    foreign_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> "Neutralised":
        obj = object.__new__(cls)
        obj.__dict__.update(args=args, kwargs=kwargs, state=None, items=[])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Nothing: ``__new__`` already recorded the arguments."""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["items"].append((key, value))

    def append(self, value: Any) -> None:
        self.__dict__["items"].append(value)

    def extend(self, values: Any) -> None:
        self.__dict__["items"].extend(values)

    def __call__(self, *args: Any, **kwargs: Any) -> "Neutralised":
        return type(self)(*args, **kwargs)

    @classmethod
    def qualified_name(cls) -> str:
        return f"{cls.foreign_module}.{cls.foreign_name}"

    def __repr__(self) -> str:
        return f"<neutralised {self.qualified_name()}>"


def _neutralised_class(module: str, name: str) -> type[Neutralised]:
    """A new placeholder class for the global ``module.name`` (nothing is imported).

    Python 2 names that protocol-2 pickles use (``__builtin__.eval``, ``commands.Popen``) are
    recorded under their Python 3 names, i.e. what plain unpickling would have called.
    """
    import _compat_pickle

    module, name = str(module), str(name)
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    else:
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
    label = re.sub(r"\W", "_", name.rsplit(".", 1)[-1])[:80] or "global"
    return type(label, (Neutralised,), {"foreign_module": module, "foreign_name": name,
                                        "__module__": __name__})


# ---------------------------------------------------------------------------- allowed callables
# Each wraps a torch/numpy rebuild helper, checks argument types and drops what could carry
# behaviour (backward hooks, Python attributes, tensor subclasses).

def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, tuple) or not all(type(v) is int for v in value):
        raise UnsafePickleError(f"tensor record with a malformed {what} ({type(value).__name__}); refused")
    return value


def _storage(value: Any) -> Any:
    import torch

    if not isinstance(value, (torch.storage.TypedStorage, torch.UntypedStorage)):
        raise UnsafePickleError(f"tensor record without a storage ({type(value).__name__}); refused")
    return value


def _offset(value: Any) -> int:
    if type(value) is not int:
        raise UnsafePickleError("tensor record with a malformed storage offset; refused")
    return value


def _rebuild_tensor(storage: Any, storage_offset: Any, size: Any, stride: Any) -> Any:
    """``torch._utils._rebuild_tensor`` with checked arguments."""
    import torch

    return torch._utils._rebuild_tensor(_storage(storage), _offset(storage_offset),
                                        _ints(size, "size"), _ints(stride, "stride"))


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any, requires_grad: Any = False,
                       backward_hooks: Any = None, metadata: Any = None) -> Any:
    """``torch._utils._rebuild_tensor_v2`` with checked arguments, no hooks, bool-only metadata."""
    import torch

    if not (isinstance(metadata, dict) and all(type(k) is str and type(v) is bool for k, v in metadata.items())):
        metadata = None
    return torch._utils._rebuild_tensor_v2(_storage(storage), _offset(storage_offset), _ints(size, "size"),
                                           _ints(stride, "stride"), requires_grad is True,
                                           collections.OrderedDict(), metadata)


def _rebuild_parameter(data: Any, requires_grad: Any = True, backward_hooks: Any = None,
                       state: Any = None) -> Any:
    """``torch.nn.Parameter(data)``; hooks and Python attributes (``state``) are dropped."""
    import torch

    if not isinstance(data, torch.Tensor):
        raise UnsafePickleError(f"parameter record holding a {type(data).__name__}, not a tensor; refused")
    return torch.nn.Parameter(data, requires_grad=requires_grad is True)


def _rebuild_from_type_v2(func: Any, new_type: Any, args: Any, state: Any) -> Any:
    """``func(*args)`` only: the subclass ``new_type`` and the attributes ``state`` are dropped.

    Safe because ``func`` can only be something this unpickler built, which the pickle could
    REDUCE directly anyway.
    """
    if not isinstance(args, tuple):
        raise UnsafePickleError("tensor record with malformed arguments; refused")
    return func(*args)


def _codecs_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles store ``bytes`` as ``_codecs.encode(str, 'latin1')``."""
    if type(text) is not str or not isinstance(encoding, str) \
            or encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "utf8"):
        raise UnsafePickleError("pickle asks for an unexpected codec call; refused")
    return text.encode(encoding)


def _numpy_multiarray() -> Any:
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy < 2
        from numpy.core import multiarray
    return multiarray


def _np_reconstruct(subtype: Any, shape: Any, dtype: Any) -> Any:
    """``numpy...multiarray._reconstruct`` for a plain ``ndarray`` shell (numpy always pickles ``(0,)``)."""
    import numpy as np

    if subtype is not _NDARRAY or shape != (0,):
        raise UnsafePickleError("numpy array record other than a plain ndarray; refused")
    return _numpy_multiarray()._reconstruct(np.ndarray, shape, dtype)


def _np_scalar(dtype: Any, *obj: Any) -> Any:
    """``numpy...multiarray.scalar`` with a real ``numpy.dtype`` (object dtype returns ``obj``)."""
    import numpy as np

    if not isinstance(dtype, np.dtype):
        raise UnsafePickleError("numpy scalar without a dtype; refused")
    return _numpy_multiarray().scalar(dtype, *obj)


# Builtins and containers below are called only with data already in the file: no sizes to
# allocate, nothing lazy to expand (a zero-stride tensor or an unfilled array could be huge).
_MATERIAL = (list, tuple, set, frozenset, dict)


def _inert_args(kind: type, args: tuple, allowed: tuple) -> tuple:
    if not all(isinstance(a, allowed) for a in args) or len(args) > 2:
        raise UnsafePickleError(f"pickle asks for {kind.__name__}() with unexpected arguments; refused")
    return args


def _container(kind: type) -> Any:
    def build(*args: Any) -> Any:
        return kind(*_inert_args(kind, args, _MATERIAL)[:1])
    build.__name__ = kind.__name__
    return build


def _byte_string(kind: type) -> Any:
    def build(*args: Any) -> Any:  # () | (bytes,) | (str, 'latin-1')
        if len(args) == 2:
            return kind(_codecs_encode(*args))
        return kind(*_inert_args(kind, args, (bytes,))[:1])
    build.__name__ = kind.__name__
    return build


def _torch_size(*args: Any) -> Any:
    import torch

    if len(args) > 1 or (args and not (isinstance(args[0], (list, tuple))
                                       and all(type(v) is int for v in args[0]))):
        raise UnsafePickleError("torch.Size with unexpected arguments; refused")
    return torch.Size(*args)


class _Token:
    """Stands for a class that may only appear as an argument, never be called."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<{self.name} token>"


_TORCH_DTYPES = ("float32", "float", "float64", "double", "float16", "half", "bfloat16", "complex32",
                 "complex64", "complex128", "cfloat", "cdouble", "chalf", "uint8", "int8", "int16", "short",
                 "int32", "int", "int64", "long", "bool", "uint16", "uint32", "uint64", "float8_e4m3fn",
                 "float8_e5m2", "float8_e4m3fnuz", "float8_e5m2fnuz", "qint8", "quint8", "qint32")
_UNTYPED_STORAGE = _Token("torch.UntypedStorage")
_NDARRAY = _Token("numpy.ndarray")
_ALLOWED: dict[tuple[str, str], Any] | None = None


def _build_allowed() -> dict[tuple[str, str], Any]:
    import numpy as np
    import torch

    allowed: dict[tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch._tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch.tensor", "_rebuild_from_type_v2"): _rebuild_from_type_v2,
        ("torch", "Size"): _torch_size,
        ("torch", "device"): torch.device,
        ("collections", "OrderedDict"): _container(collections.OrderedDict),
        ("_codecs", "encode"): _codecs_encode,
        ("numpy", "ndarray"): _NDARRAY,
        ("numpy", "dtype"): np.dtype,
    }
    # Storage classes only name a storage's type inside torch's persistent ids (typed ones such as
    # ``torch.FloatStorage`` are intercepted by torch itself); the token is swapped back there.
    for module in ("torch", "torch.storage"):
        allowed[(module, "UntypedStorage")] = _UNTYPED_STORAGE
    for name in _TORCH_DTYPES:
        if isinstance(getattr(torch, name, None), torch.dtype):
            allowed[("torch", name)] = getattr(torch, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _np_reconstruct
        allowed[(module, "scalar")] = _np_scalar
        allowed[(module, "ndarray")] = _NDARRAY
        allowed[(module, "dtype")] = np.dtype
    inert = {"set": _container(set), "frozenset": _container(frozenset), "bytes": _byte_string(bytes),
             "bytearray": _byte_string(bytearray), "complex": complex, "slice": slice, "object": object}
    for module in ("builtins", "__builtin__"):
        for name, value in inert.items():
            allowed[(module, name)] = value
    return allowed


def allowed_globals() -> dict[tuple[str, str], Any]:
    """``(module, name) -> object`` for every global the unpickler resolves (built once)."""
    global _ALLOWED
    if _ALLOWED is None:
        _ALLOWED = _build_allowed()
    return _ALLOWED


# ---------------------------------------------------------------------------- the unpickler
def _ascii(value: Any) -> Any:
    return value.decode("ascii", "replace") if isinstance(value, bytes) else value


class Unpickler(pickle.Unpickler):
    """``find_class`` with an allow-list; any other global becomes a :class:`Neutralised` subclass."""

    def __init__(self, file: Any, **kwargs: Any) -> None:
        self._torch_persistent_load = None
        self._neutralised: dict[tuple[str, str], type[Neutralised]] = {}
        super().__init__(file, **kwargs)

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        key = (module, name)
        found = allowed_globals().get(key) if all(type(s) is str for s in key) else None
        if found is not None:
            return found
        if key not in self._neutralised:
            self._neutralised[key] = _neutralised_class(module, name)
        return self._neutralised[key]

    # torch assigns ``unpickler.persistent_load = its_function``; the C unpickler looked the
    # attribute up at construction, so it keeps calling the filter below.
    @property
    def persistent_load(self) -> Any:
        return self._filtered_persistent_load

    @persistent_load.setter
    def persistent_load(self, function: Any) -> None:
        self._torch_persistent_load = function

    def _filtered_persistent_load(self, pid: Any) -> Any:
        """Pass torch's storage records (and legacy integer keys) on; neutralise or refuse the rest."""
        import torch

        inner = self._torch_persistent_load
        if inner is None:
            raise UnsafePickleError("pickle refers to an external object where none is expected; refused")
        if isinstance(pid, tuple) and pid and _ascii(pid[0]) == "storage":
            storage_type = pid[1] if len(pid) > 1 else None
            if storage_type is _UNTYPED_STORAGE:
                storage_type = torch.UntypedStorage
            elif not isinstance(storage_type, torch.serialization.StorageType):
                raise UnsafePickleError(f"storage record with type {storage_type!r}; refused")
            if not all(isinstance(v, (str, bytes)) for v in pid[2:4]) or (len(pid) > 4 and type(pid[4]) is not int):
                raise UnsafePickleError("malformed storage record; refused")
            return inner(("storage", storage_type, *pid[2:]))
        if isinstance(pid, tuple) and pid and _ascii(pid[0]) == "module":
            # legacy whole-module pickles: never let torch inspect or diff the class source
            cls = pid[1] if len(pid) > 1 else None
            if isinstance(cls, type) and issubclass(cls, Neutralised):
                return cls
            return _neutralised_class("persistent", "module")
        if type(pid) is int or (type(pid) is str and pid.isdigit()):  # legacy tar format keys
            return inner(pid)
        raise UnsafePickleError(f"unsupported persistent id {type(pid).__name__}; refused")


def load(file: Any, **kwargs: Any) -> Any:
    """``pickle.load`` through :class:`Unpickler` (torch uses it for the legacy format's headers)."""
    return Unpickler(file, **kwargs).load()


# ---------------------------------------------------------------------------- inspecting results
def is_neutralised(value: Any) -> bool:
    """A placeholder instance or class produced by :class:`Unpickler`."""
    return isinstance(value, Neutralised) or (isinstance(value, type) and issubclass(value, Neutralised))


def _children(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield v
    elif isinstance(value, (list, tuple, set, frozenset)):
        yield from value
    elif isinstance(value, Neutralised):
        d = value.__dict__
        yield from d["args"]
        yield from d["kwargs"].values()
        yield d["state"]
        yield from d["items"]
    else:
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype == object:
            yield from value.reshape(-1).tolist()


def neutralised_names(value: Any, limit: int = 100_000) -> list[str]:
    """Qualified names of the neutralised globals reachable from ``value`` (first seen first)."""
    names: dict[str, None] = {}
    seen: set[int] = set()
    stack = [value]
    while stack and len(seen) < limit:
        item = stack.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if is_neutralised(item):
            names.setdefault(item.qualified_name(), None)
        stack.extend(reversed(list(_children(item))))
    return list(names)


def strip_neutralised(value: Any) -> Any:
    """Copy of ``value`` whose dicts, lists, tuples and sets no longer hold neutralised objects.

    Shared sub-containers are copied once; cyclic or absurdly deep nesting raises UnsafePickleError.
    """
    memo: dict[int, tuple[Any, Any]] = {}  # id -> (original, copy); keeps originals alive

    def keep(v: Any) -> bool:
        return not is_neutralised(v)

    def strip(v: Any, depth: int) -> Any:
        if id(v) in memo:
            return memo[id(v)][1]
        if depth > 200:
            raise UnsafePickleError("checkpoint nests containers too deeply (or in a cycle); refused")
        if isinstance(v, dict):
            out: Any = {strip(k, depth + 1): strip(x, depth + 1) for k, x in v.items() if keep(k) and keep(x)}
            if isinstance(v, collections.OrderedDict):
                out = collections.OrderedDict(out)
        elif type(v) in (list, tuple):
            out = type(v)(strip(x, depth + 1) for x in v if keep(x))
        elif type(v) in (set, frozenset):
            out = type(v)(x for x in v if keep(x))
        else:
            return v
        memo[id(v)] = (v, out)
        return out

    return strip(value, 0)
