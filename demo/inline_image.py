"""Inline images: a ``gr.Image`` whose pictures travel inside the event message as ``data:`` URLs.

The live preview changes on every slider move; sending it inline writes nothing to disk (no file
in Gradio's cache, none in the studio's folder) and saves the browser a second request. The
component stays an ordinary ``gr.Image`` (only its instance's ``postprocess`` is wrapped, so no
subclass and no generated ``.pyi``). Meant for small, short-lived pictures (a 512^2 JPEG is about
60 KB of base64); other values go through ``gr.Image`` unchanged.
"""

from __future__ import annotations

import base64
import types

import gradio as gr
import numpy as np
from gradio.data_classes import ImageData


class Jpeg(bytes):
    """Encoded JPEG bytes to show inline."""


def inline_jpeg(img: np.ndarray, quality: int = 90) -> Jpeg:
    from demo.files import encode_jpeg

    return Jpeg(encode_jpeg(img, quality))


def _postprocess(self, value):
    if isinstance(value, Jpeg):
        return ImageData(url="data:image/jpeg;base64," + base64.b64encode(value).decode("ascii"),
                         orig_name="preview.jpg", mime_type="image/jpeg", size=len(value))
    return type(self).postprocess(self, value)


def inline(component: gr.Image) -> gr.Image:
    """Let ``component`` show :class:`Jpeg` values inline (returns it)."""
    component.postprocess = types.MethodType(_postprocess, component)
    return component
