"""The download record: ``<checkpoints>/.downloads/verified.json``, the SHA-256 (and how it was
verified) of every file fetched here, so ``doctor --verify`` can tell a later change.

The bottom of :mod:`caphuman.weights`: it imports nothing from the package. Import order is
``record`` <- ``registry`` <- ``safe_load`` <- ``fetch`` <- ``download`` <- ``provision``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STAGING_DIRNAME = ".downloads"
RECORD_NAME = "verified.json"


def staging_dir(root: str | os.PathLike) -> Path:
    """Where partial downloads and the record live (``<root>/.downloads``)."""
    return Path(root) / STAGING_DIRNAME


def read_record(root: str | os.PathLike) -> dict:
    """``{key: {"sha256", "source", "verified_by", ...}}`` of files fetched and verified here."""
    path = staging_dir(root) / RECORD_NAME
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_record(root: str | os.PathLike, key: str, entry: dict) -> None:
    """Set ``key``'s entry (atomically: written beside, then renamed)."""
    record = read_record(root)
    record[key] = entry
    path = staging_dir(root) / RECORD_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
