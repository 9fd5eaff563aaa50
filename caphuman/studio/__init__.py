"""The studio's logic (no Gradio here): :mod:`controls` (slider values <-> HeadState),
:mod:`service` (analyse / preview / generate with graceful fallbacks), :mod:`reference`
(photo -> square frame, with or without the photo-analysis module), :mod:`generation`
(diffusion backend adapter), :mod:`environment` (device, weights and head status banner),
:mod:`serving` (host/port/queue settings) and :mod:`gpu` (the ZeroGPU decorator, a no-op elsewhere).
The Gradio layout lives in ``demo/``."""

import importlib.util as _util


def has_module(name: str) -> bool:
    """True when ``name`` (possibly a submodule of a missing package) can be imported."""
    try:
        return _util.find_spec(name) is not None
    except (ModuleNotFoundError, ValueError):
        return False
