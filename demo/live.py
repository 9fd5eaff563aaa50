"""The live head's payload files (see :mod:`caphuman.studio.live`): one JSON file per
(head, base shape/albedo/fixed expression, reference photo), written once and served by Gradio
from :data:`PAYLOAD_DIR` (an allowed path). At most :data:`KEEP` files are kept."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

from caphuman.controls.state import HeadState
from caphuman.studio.controls import NUM_RAW_EXPRESSION
from caphuman.studio.live import head_payload

PAYLOAD_DIR = Path(tempfile.mkdtemp(prefix="caphuman-live-"))
KEEP = 64
_lock = threading.Lock()
_files: OrderedDict[str, Path] = OrderedDict()


def payload_key(head: str, base: HeadState, photo_id: str | None) -> str:
    """What the payload depends on: the head, the base's shape, albedo and fixed expression, the photo."""
    fixed = list(base.expression[NUM_RAW_EXPRESSION:])
    text = json.dumps([head, base.shape, base.albedo, fixed, photo_id])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def payload_url(service, base: HeadState, photo=None) -> str:
    """URL (relative to the page) of the payload for ``base``; ``photo``: (id, PhotoProjection, jpeg bytes)."""
    photo_id = photo[0] if photo else None
    key = payload_key(service.head_description, base, photo_id)
    with _lock:
        path = _files.get(key)
        if path is not None and path.is_file():
            _files.move_to_end(key)
            return _url(path)
    with service._render_lock:
        data = head_payload(service.pipeline, base, photo[1] if photo else None, photo[2] if photo else None, key)
    path = PAYLOAD_DIR / f"live-head-{key}.json"
    tmp = path.with_suffix(".part")
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, path)
    with _lock:
        _files[key] = path
        while len(_files) > KEEP:
            _, old = _files.popitem(last=False)
            old.unlink(missing_ok=True)
    return _url(path)


def _url(path: Path) -> str:
    return "gradio_api/file=" + str(path)
