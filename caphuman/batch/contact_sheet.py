"""Contact sheet: the images of a sweep as one labelled grid (PIL only).

Each cell is the image scaled to ``cell`` pixels (never enlarged past 2x) with its label -- the
control values of that cell, e.g. ``yaw -60 · pitch 10`` -- in a band under it; an optional title
line (prompt, seed) heads the sheet.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
GAP = 6


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow's built-in scalable font (needs FreeType)
    except (TypeError, OSError, AttributeError):
        return ImageFont.load_default()


def _as_pil(image: Any):
    from PIL import Image

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    return Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")


def _fit_text(draw, text: str, font, width: int) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def contact_sheet(images: Sequence[Any], labels: Sequence[str], columns: int, title: str | None = None,
                  cell: int | None = None):
    """PIL image: ``images`` (uint8 arrays or PIL images, row by row) in ``columns`` columns, each with its
    label. ``cell``: cell side in pixels (default: the images' side, kept between 96 and 256)."""
    from PIL import Image, ImageDraw

    if len(images) != len(labels):
        raise ValueError(f"{len(images)} images but {len(labels)} labels")
    if not images:
        raise ValueError("no images for the contact sheet")
    pics = [_as_pil(im) for im in images]
    columns = max(1, min(int(columns), len(pics)))
    rows = -(-len(pics) // columns)
    side = cell or int(min(256, max(96, max(max(p.size) for p in pics))))
    font_px = max(11, min(16, side // 9))
    font = _font(font_px)
    band = font_px + 8
    title_h = (font_px + 12) if title else 0
    W = columns * side + (columns + 1) * GAP
    H = title_h + rows * (side + band) + (rows + 1) * GAP
    sheet = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    if title:
        draw.text((GAP, GAP), _fit_text(draw, title, font, W - 2 * GAP), fill=INK, font=font)
    for i, (pic, text) in enumerate(zip(pics, labels)):
        r, c = divmod(i, columns)
        x = GAP + c * (side + GAP)
        y = title_h + GAP + r * (side + band + GAP)
        scale = side / max(pic.size)
        size = (max(1, round(pic.size[0] * scale)), max(1, round(pic.size[1] * scale)))
        resample = Image.Resampling.LANCZOS if scale < 1 else Image.Resampling.NEAREST
        thumb = pic.resize(size, resample) if size != pic.size else pic
        sheet.paste(thumb, (x + (side - size[0]) // 2, y + (side - size[1]) // 2))
        text = _fit_text(draw, str(text), font, side)
        tw = draw.textlength(text, font=font)
        draw.text((x + (side - tw) / 2, y + side + 3), text, fill=INK, font=font)
    return sheet


__all__ = ["contact_sheet"]
