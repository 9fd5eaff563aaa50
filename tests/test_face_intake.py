import io

import numpy as np
import pytest
from PIL import Image

from caphuman.errors import InputError
from caphuman.face.intake import load_image, pixel_hash


def _bytes(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_greyscale_rgba_cmyk_palette_16bit(tmp_path):
    grey = Image.fromarray(np.full((20, 30), 100, np.uint8), "L")
    out = load_image(_bytes(grey, "PNG"))
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8 and (out == 100).all()

    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:10, :, 3] = 255  # top opaque red, bottom fully transparent -> white
    out = load_image(_bytes(Image.fromarray(rgba, "RGBA"), "PNG"))
    assert tuple(out[0, 0]) == (255, 0, 0) and tuple(out[-1, 0]) == (255, 255, 255)

    cmyk = Image.new("CMYK", (20, 20), (0, 255, 255, 0))  # red in CMYK
    out = load_image(_bytes(cmyk, "JPEG"))
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 60

    pal = Image.new("P", (20, 20))
    pal.putpalette([0, 0, 255] * 256)
    assert tuple(load_image(_bytes(pal, "PNG"))[0, 0]) == (0, 0, 255)

    a16 = np.full((20, 20), 65535, np.uint16)
    a16[:10] = 0
    out = load_image(_bytes(Image.fromarray(a16), "PNG"))
    assert tuple(out[-1, 0]) == (255, 255, 255) and tuple(out[0, 0]) == (0, 0, 0)
    # arrays: float, 16-bit RGB, grey+alpha
    assert load_image(np.ones((20, 20, 3), np.float32))[0, 0, 0] == 255
    assert load_image(np.full((20, 20, 3), 257 * 128, np.uint16))[0, 0, 0] == 128
    la = np.zeros((20, 20, 2), np.uint8)
    assert (load_image(la) == 255).all()  # transparent black on white


def test_exif_orientation_applied():
    img = Image.new("RGB", (40, 20), (0, 255, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    out = load_image(_bytes(img, "JPEG", exif=exif))
    assert out.shape[:2] == (40, 20)


def test_errors_and_limits(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(empty)
    with pytest.raises(InputError, match="no such file"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.jpg"
    text.write_text("hello, not an image")
    with pytest.raises(InputError, match="not an image"):
        load_image(text)
    data = _bytes(Image.new("RGB", (64, 64), (1, 2, 3)), "PNG")
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated|decode"):
        load_image(trunc)
    with pytest.raises(InputError, match="at least"):
        load_image(np.zeros((4, 4, 3), np.uint8))
    big = load_image(np.zeros((300, 900, 3), np.uint8), max_side=300)
    assert big.shape == (100, 300, 3)


def test_decompression_bomb_refused(monkeypatch):
    import caphuman.face.intake as intake

    monkeypatch.setattr(intake, "MAX_PIXELS", 1000)
    with pytest.raises(InputError, match="too large"):
        load_image(_bytes(Image.new("L", (100, 100)), "PNG"))


def test_pixel_hash_content_keyed():
    a = np.zeros((20, 20, 3), np.uint8)
    b = a.copy()
    assert pixel_hash(a) == pixel_hash(b)
    b[0, 0, 0] = 1
    assert pixel_hash(a) != pixel_hash(b)
