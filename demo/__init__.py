"""The Gradio studio (thin: layout + event wiring). Logic lives in :mod:`caphuman.studio`."""

from demo.ui import build_demo

__all__ = ["build_demo"]
