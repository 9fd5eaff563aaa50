"""``@gpu(duration=s)``: ``spaces.GPU`` on Hugging Face ZeroGPU, a no-op everywhere else.

``app.py`` imports :mod:`spaces` before torch (ZeroGPU requires it); here we only look it up.
"""

from __future__ import annotations

import sys


def gpu(duration: int = 120):
    """Decorator for the generation function only (seconds of GPU time requested per call)."""
    spaces = sys.modules.get("spaces")
    if spaces is None:
        try:
            import spaces  # noqa: F811 - only when app.py did not import it first
        except ImportError:
            spaces = None
    if spaces is None or not hasattr(spaces, "GPU"):
        return lambda fn: fn
    return spaces.GPU(duration=duration)
