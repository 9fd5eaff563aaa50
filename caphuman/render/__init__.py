"""Rendering: camera/placement, the rasteriser, the 9-channel hint, the preview image, mesh export."""
