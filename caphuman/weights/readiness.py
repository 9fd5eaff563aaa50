"""One answer to "can I generate a portrait now?", shared by ``doctor`` and the studio banner.

Generation needs a converted CapHuman folder (``model_index.json``; made from the CapHuman
checkpoint + an SD1.5 backbone (+ VAE, CLIP) by ``download all``) and identity encoders: the
folder's own ``identity/`` (the tiny test model) or FaceNet + BiSeNet from ``checkpoints/``.
Only file existence is checked: cheap enough for every page load.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from caphuman.errors import CapHumanError

DOWNLOAD_COMMAND = "python -m caphuman download all"


@dataclass
class Readiness:
    """``ready``: everything generation loads is present. ``missing``: what is not (short names
    with their paths). ``command``: the one command that fixes it (None when ready or when only
    a manual step would). ``weights``: the converted folder looked at."""

    ready: bool
    weights: Path | None
    missing: list[str] = field(default_factory=list)
    command: str | None = None

    def line(self) -> str:
        """``ready to generate: yes (...)`` or ``ready to generate: no — missing: ... — run: ...``."""
        if self.ready:
            return f"ready to generate: yes (weights: {self.weights})"
        text = "ready to generate: no — missing: " + ", ".join(self.missing)
        return text + (f" — run: {self.command}" if self.command else "")

    def short(self) -> str:
        """The same answer in a few words (the studio banner; :meth:`line` goes in its details)."""
        if self.ready:
            return "ready to generate: yes"
        what = self.missing[0] if len(self.missing) == 1 else f"{len(self.missing)} model files"
        return f"ready to generate: no — missing {what}" + (f" — run: {self.command}" if self.command else "")


def generation_readiness(weights: str | os.PathLike | None = None,
                         root: str | os.PathLike | None = None) -> Readiness:
    """Check the converted folder (``weights`` as ``generate --weights`` resolves it) and the
    identity encoders under ``root`` (the checkpoints folder)."""
    from caphuman.weights.download import resolve_weights
    from caphuman.weights.registry import REGISTRY, file_status

    missing: list[str] = []
    try:
        folder = resolve_weights(weights, root)
    except CapHumanError as exc:
        return Readiness(False, None, [str(exc)], DOWNLOAD_COMMAND)

    def lacks(key: str) -> bool:
        return not file_status(key, root).ok

    if not (folder / "model_index.json").is_file():
        sources = [k for k in ("caphuman", "backbone", "vae", "clip") if lacks(k)]
        if sources:
            missing += [f"{k} ({REGISTRY[k].path})" for k in sources]
        missing.append(f"converted weights ({folder})")
    if not (folder / "identity" / "identity.json").is_file():
        missing += [f"{k} ({REGISTRY[k].path})" for k in ("facenet", "face_parsing") if lacks(k)]
    if not missing:
        return Readiness(True, folder)
    return Readiness(False, folder, missing, DOWNLOAD_COMMAND)


__all__ = ["Readiness", "generation_readiness", "DOWNLOAD_COMMAND"]
