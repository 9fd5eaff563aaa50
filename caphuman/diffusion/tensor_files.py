"""Weights files read lazily and written as a stream: what keeps ``convert`` within a few GiB.

* :class:`WeightsFile`: the tensors of a ``.safetensors`` file or a torch checkpoint, opened without
  reading them. ``keys()`` / ``shape()`` come from the header (or the pickle), ``tensors(select)``
  maps the file copy-on-write and returns views of the selected keys only: a page is read when a
  view is first touched and released with the last view. A ``.safetensors`` header is checked
  completely first (a truncated or foreign file is one clear :class:`InputError`).
* :func:`write_safetensors`: writes a ``str -> Tensor`` mapping one tensor at a time, each cast to
  the output dtype just before it is written, so a component never exists twice in memory.

Byte order: little-endian, as the safetensors format and every supported machine.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Iterable

from caphuman.errors import InputError, MissingWeightsError

#: The safetensors format refuses headers above 100 MB; so do we (before reading them).
MAX_HEADER_BYTES = 100 * 1024 * 1024
_ST_DTYPES = ("F64", "F32", "F16", "BF16", "I64", "I32", "I16", "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2",
              "U16", "U32", "U64")


def _torch_dtypes() -> dict:
    import torch

    names = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64",
             "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8", "BOOL": "bool",
             "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "U16": "uint16", "U32": "uint32",
             "U64": "uint64"}
    return {k: getattr(torch, v) for k, v in names.items() if hasattr(torch, v)}


def _bad_safetensors(path: Path, why: str) -> InputError:
    return InputError(f"{path}: {why}; download the file again (or check that it is a .safetensors file)")


def read_safetensors_header(path: str | os.PathLike) -> tuple[dict[str, dict], int]:
    """``({key: {"dtype", "shape", "data_offsets"}}, data_start)`` of a ``.safetensors`` file, every
    entry checked against the file's size (a truncated file names the first tensor it cuts)."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(8)
        if len(head) < 8:
            raise _bad_safetensors(path, f"only {size} bytes, not even a safetensors header")
        n = int.from_bytes(head, "little")
        if n > MAX_HEADER_BYTES:
            raise _bad_safetensors(path, f"declares a {n}-byte header (the format allows 100 MB): "
                                         "not a safetensors file")
        if 8 + n > size:
            raise _bad_safetensors(path, f"the header declares {n} bytes but only {size - 8} follow: "
                                         "the file is truncated")
        raw = fh.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise _bad_safetensors(path, "the header is not valid JSON: not a safetensors file") from None
    if not isinstance(header, dict):
        raise _bad_safetensors(path, "the header is not a JSON object: not a safetensors file")
    data_size = size - 8 - n
    sizes = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2, "I16": 2,
             "U16": 2}
    entries: dict[str, dict] = {}
    for key, e in header.items():
        if key == "__metadata__":
            continue
        ok = (isinstance(e, dict) and e.get("dtype") in _ST_DTYPES and isinstance(e.get("shape"), list)
              and all(type(d) is int and d >= 0 for d in e["shape"]) and isinstance(e.get("data_offsets"), list)
              and len(e["data_offsets"]) == 2 and all(type(o) is int and o >= 0 for o in e["data_offsets"])
              and e["data_offsets"][0] <= e["data_offsets"][1])
        if not ok:
            raise _bad_safetensors(path, f"malformed header entry for {key[:80]!r}")
        begin, end = e["data_offsets"]
        nbytes = math.prod(e["shape"]) * sizes.get(e["dtype"], 1)
        if end - begin != nbytes:
            raise _bad_safetensors(path, f"tensor {key[:80]!r} declares shape {e['shape'][:8]} {e['dtype']} "
                                         f"({nbytes} bytes) but spans {end - begin} bytes")
        if end > data_size:
            raise _bad_safetensors(path, f"tensor {key[:80]!r} ends at byte {end} of the data but the file holds "
                                         f"only {data_size}: the file is truncated")
        entries[key] = e
    return entries, 8 + n


class WeightsFile:
    """One weights file, opened lazily. ``log`` gets the one line about a checkpoint's extras."""

    def __init__(self, path: str | os.PathLike, log: Callable[[str], object] | None = None):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingWeightsError(f"file not found: {self.path}")
        self.is_safetensors = self.path.suffix == ".safetensors"
        self._whole: dict | None = None  # legacy (non-zip) checkpoints cannot be mapped: read once
        if self.is_safetensors:
            self._entries, self._data_start = read_safetensors_header(self.path)
            self._shapes = {k: tuple(e["shape"]) for k, e in self._entries.items()}
            self._dtypes = {k: e["dtype"] for k, e in self._entries.items()}
        else:
            import zipfile

            self._mappable = zipfile.is_zipfile(self.path)
            sd = self._load_torch(log)
            self._shapes = {k: tuple(v.shape) for k, v in sd.items()}
            self._dtypes = {k: str(v.dtype).removeprefix("torch.") for k, v in sd.items()}
            if not self._mappable:
                self._whole = sd
            del sd

    @property
    def name(self) -> str:
        return self.path.name

    def keys(self) -> list[str]:
        return list(self._shapes)

    def __contains__(self, key: str) -> bool:
        return key in self._shapes

    def shape(self, key: str) -> tuple[int, ...]:
        return self._shapes[key]

    def dtype_name(self, key: str) -> str:
        """``F16``/``F32``... for safetensors, ``float16``/``float32``... for checkpoints."""
        return self._dtypes[key]

    def _load_torch(self, log) -> dict:
        from caphuman.diffusion.convert import SAFE_ALTERNATIVES
        from caphuman.errors import UnsafePickleError
        from caphuman.weights.safe_load import load_checkpoint_state_dict

        try:
            return load_checkpoint_state_dict(self.path, log=log or (lambda *_: None), mmap=self._mappable)
        except UnsafePickleError as exc:
            raise UnsafePickleError(f"{exc}; {SAFE_ALTERNATIVES}") from None

    def tensors(self, select: Callable[[str], bool] | Iterable[str]) -> dict:
        """``{key: tensor}`` for the selected keys (a predicate or a collection of keys), as views of
        a fresh copy-on-write mapping of the file: dropping them releases what was read."""
        if not callable(select):
            wanted = set(select)
            select = wanted.__contains__
        keys = [k for k in self._shapes if select(k)]
        if self._whole is not None:
            return {k: self._whole[k] for k in keys}
        if not self.is_safetensors:
            sd = self._load_torch(None)
            return {k: sd[k] for k in keys}
        if not keys:
            return {}
        import numpy as np
        import torch

        dtypes = _torch_dtypes()
        mapped = np.memmap(self.path, dtype=np.uint8, mode="c")
        out = {}
        for k in keys:
            e = self._entries[k]
            if e["dtype"] not in dtypes:
                raise InputError(f"{self.path}: tensor {k!r} has dtype {e['dtype']}, which this torch cannot read")
            begin, end = (self._data_start + o for o in e["data_offsets"])
            raw = torch.from_numpy(mapped[begin:end]) if end > begin else torch.empty(0, dtype=torch.uint8)
            out[k] = raw.view(dtypes[e["dtype"]]).reshape(e["shape"])
        return out


def _dtype_name(dtype) -> str:
    names = {v: k for k, v in _torch_dtypes().items()}
    if dtype not in names:
        raise InputError(f"cannot store a {dtype} tensor in a safetensors file")
    return names[dtype]


def write_safetensors(path: str | os.PathLike, tensors: dict, dtype=None,
                      metadata: dict[str, str] | None = None) -> Path:
    """Write ``tensors`` (floating ones cast to ``dtype`` when given) as a ``.safetensors`` file, one
    tensor in memory at a time; written to ``path.partial`` and renamed when complete."""
    import torch

    path = Path(path)
    plan, offset = [], 0
    header: dict = {"__metadata__": dict(metadata or {"format": "pt"})}
    for key, t in tensors.items():
        out_dtype = dtype if dtype is not None and t.is_floating_point() else t.dtype
        nbytes = t.numel() * torch.empty((), dtype=out_dtype).element_size()
        header[key] = {"dtype": _dtype_name(out_dtype), "shape": list(t.shape), "data_offsets": [offset, offset + nbytes]}
        plan.append((key, out_dtype))
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(partial, "wb") as fh:
        fh.write(len(raw).to_bytes(8, "little"))
        fh.write(raw)
        for key, out_dtype in plan:
            out = tensors[key].to(out_dtype).contiguous()
            if out.numel():
                fh.write(out.reshape(-1).view(torch.uint8).numpy().data)
            del out
    os.replace(partial, path)
    return path


__all__ = ["WeightsFile", "read_safetensors_header", "write_safetensors", "MAX_HEADER_BYTES"]
