"""Load a converted CapHuman folder, and say exactly what is wrong when it is damaged.

:func:`load_pipeline` is the one loader of the CLI (``generate``) and the studio. Before loading it
checks what is cheap to check (``model_index.json`` and every component's JSON files parse, every
``.safetensors`` header is complete); when loading still fails it finds the file at fault (a tensor
whose shape does not match the component's ``config.json``). Either way the error is a
:class:`~caphuman.errors.BrokenWeightsError` naming the file, relative to the folder, and the command
that re-creates the folder.
"""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path
from typing import Any

from caphuman.errors import BrokenWeightsError, CapHumanError, MissingWeightsError

#: Folders next to the pipeline components that hold weights too (the identity encoders).
EXTRA_FOLDERS = ("identity",)


def repair_hint(folder: Path) -> str:
    """The command that re-creates ``folder``."""
    if (folder / "TINY_MODEL.json").is_file():
        return f"re-create it: python -m caphuman.testing.tiny_model --out {folder}"
    return ("re-create it: delete the folder and run `python -m caphuman download all` (downloads what is "
            "missing and converts again into checkpoints/caphuman-diffusers), or run "
            f"`python -m caphuman convert --out {folder} ...` again")


def _broken(folder: Path, what: str) -> BrokenWeightsError:
    return BrokenWeightsError(f"broken model folder {folder}: {what}; {repair_hint(folder)}")


def _read_json(folder: Path, rel: str) -> Any:
    path = folder / rel
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise _broken(folder, f"{rel} cannot be read ({exc.strerror or type(exc).__name__})") from None
    except UnicodeDecodeError:
        raise _broken(folder, f"{rel} is not UTF-8 text (a damaged JSON file)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise _broken(folder, f"{rel} is not valid JSON ({exc.msg}, line {exc.lineno})") from None
    except (ValueError, RecursionError):
        raise _broken(folder, f"{rel} is not valid JSON") from None


def components(folder: Path) -> dict[str, tuple[str, str]]:
    """``model_index.json`` checked: component name -> (library, class) for the components present."""
    if not (folder / "model_index.json").is_file():
        raise MissingWeightsError(f"{folder} is not a converted CapHuman folder (no model_index.json); run "
                                  "`python -m caphuman download all` or `python -m caphuman convert ...`")
    index = _read_json(folder, "model_index.json")
    if not isinstance(index, dict) or not isinstance(index.get("_class_name"), str):
        raise _broken(folder, 'model_index.json is not a pipeline index (a JSON object with "_class_name")')
    out = {}
    for name, entry in index.items():
        if name.startswith("_"):
            continue
        if not (isinstance(entry, list) and len(entry) == 2):
            raise _broken(folder, f'model_index.json: "{name}" must be [library, class], got {json.dumps(entry)[:60]}')
        if entry[0] is None or entry[1] is None:
            continue  # an optional component left out
        if not all(isinstance(e, str) for e in entry):
            raise _broken(folder, f'model_index.json: "{name}" must be [library, class] names')
        if not (folder / name).is_dir():
            raise _broken(folder, f"the component folder {name}/ listed in model_index.json is missing")
        out[name] = (entry[0], entry[1])
    return out


def _weight_files(folder: Path, sub: str) -> list[Path]:
    return sorted((folder / sub).glob("*.safetensors"))


def check_folder(folder: str | Path) -> dict[str, tuple[str, str]]:
    """The cheap checks (no weights loaded): the index, every component's JSON files, every
    ``.safetensors`` header (a truncated or overwritten file fails here). Returns the components."""
    folder = Path(folder)
    comps = components(folder)
    subs = [*comps, *(s for s in EXTRA_FOLDERS if (folder / s).is_dir())]
    for sub in subs:
        for path in sorted((folder / sub).glob("*.json")):
            data = _read_json(folder, f"{sub}/{path.name}")
            if path.name.endswith("config.json") and not isinstance(data, dict):
                raise _broken(folder, f"{sub}/{path.name} is not a configuration (a JSON object)")
        for path in _weight_files(folder, sub):
            _check_safetensors(folder, path)
    return comps


def _check_safetensors(folder: Path, path: Path) -> None:
    from safetensors import safe_open

    rel = path.relative_to(folder).as_posix()
    try:
        with safe_open(str(path), framework="pt") as f:
            list(f.keys())
    except OSError as exc:
        raise _broken(folder, f"{rel} cannot be read ({exc.strerror or exc})") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError: truncated, empty or not safetensors at all
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise _broken(folder, f"{rel} is truncated or not a safetensors file ({detail})") from None


def require_converted(folder: str | Path | None) -> Path:
    """``folder`` when it holds a converted CapHuman pipeline (``model_index.json``), else a
    :class:`MissingWeightsError` saying how to make one (cheap: no file is read)."""
    if folder is None or not (Path(folder) / "model_index.json").is_file():
        raise MissingWeightsError(f"no converted CapHuman weights in {folder} (model_index.json missing); run "
                                  "`python -m caphuman download all` or `python -m caphuman convert ...`")
    return Path(folder)


def load_pipeline(folder: str | Path, dtype=None):
    """``CapHumanPipeline.from_pretrained(folder, dtype=dtype)`` with the checks above; any failure
    is a :class:`BrokenWeightsError` naming the damaged file (or a :class:`MissingWeightsError`).
    A scheduler that carries the files' schedule (``trained_betas``) is rebuilt as DDIM with it exactly."""
    from caphuman.diffusion.pipeline import CapHumanPipeline

    folder = Path(folder)
    comps = check_folder(folder)
    try:
        pipe = CapHumanPipeline.from_pretrained(str(folder), dtype=dtype)
    except CapHumanError:
        raise
    except Exception as exc:  # noqa: BLE001 - turned into one message naming the file
        raise diagnose(folder, comps, exc) from exc
    from caphuman.diffusion.schedulers import make_scheduler, schedule_betas_of

    if schedule_betas_of(pipe.scheduler) is not None:  # the files' schedule, exact (see schedulers)
        pipe.scheduler = make_scheduler("ddim", like=pipe.scheduler)
    return pipe


_SHAPE = re.compile(r"(\S+) expected shape torch\.Size\(\[([\d, ]*)\]\), but got torch\.Size\(\[([\d, ]*)\]\)")


def diagnose(folder: Path, comps: dict[str, tuple[str, str]], exc: BaseException) -> BrokenWeightsError:
    """The error for a load that failed after the cheap checks passed: which file, and why."""
    text = str(exc)
    m = _SHAPE.search(text)
    if m:  # diffusers names the tensor but not the file: find the file holding it with that shape
        key, expected, got = m.group(1), _dims(m.group(2)), _dims(m.group(3))
        for sub in comps:
            for path in _weight_files(folder, sub):
                if _header_shapes(path).get(key) == got:
                    return _mismatch(folder, path, key, got, expected)
    for sub, (library, cls_name) in comps.items():  # e.g. transformers: compare with the config's shapes
        try:
            found = _first_mismatch(folder, sub, library, cls_name)
        except Exception:  # noqa: BLE001 - the diagnosis itself must never hide the original error
            found = None
        if found:
            return _mismatch(folder, *found)
    first = text.splitlines()[0][:200] if text else ""
    return _broken(folder, f"it cannot be loaded ({type(exc).__name__}: {first})")


def _dims(text: str) -> list[int]:
    return [int(x) for x in text.replace(" ", "").split(",") if x]


def _mismatch(folder: Path, path: Path, key: str, got, expected) -> BrokenWeightsError:
    rel = path.relative_to(folder).as_posix()
    config = (path.parent / "config.json").relative_to(folder).as_posix()
    return _broken(folder, f"{rel} does not match {config} ({key} has shape {list(got)}, the model expects "
                           f"{list(expected)})")


def _header_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: list(f.get_slice(k).get_shape()) for k in f.keys()}


def _first_mismatch(folder: Path, sub: str, library: str, cls_name: str):
    """(file, tensor, shape in the file, shape the config builds) for the first tensor of
    ``sub`` whose shape differs from a model built from ``sub/config.json`` (on the meta device:
    nothing is allocated), or None."""
    files = _weight_files(folder, sub)
    if not files or not (folder / sub / "config.json").is_file():
        return None
    import torch

    cls = getattr(importlib.import_module(library), cls_name)
    with torch.device("meta"):
        if hasattr(cls, "load_config") and hasattr(cls, "from_config"):  # diffusers ModelMixin
            model = cls.from_config(cls.load_config(str(folder / sub)))
        else:  # transformers PreTrainedModel
            config = cls.config_class.from_pretrained(str(folder / sub))
            model = cls(config)
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    for path in files:
        for key, shape in _header_shapes(path).items():
            if key in expected and expected[key] != shape:
                return path, key, shape, expected[key]
    return None


__all__ = ["load_pipeline", "check_folder", "components", "diagnose", "repair_hint"]
