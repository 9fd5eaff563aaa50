"""The server preview can show the person's face on the head (like the live head's textured mode);
the 9-channel hint never changes with it."""

import numpy as np
import pytest

from caphuman.controls import HeadState
from caphuman.controls.state import Pose
from caphuman.render.photo_texture import FaceTexture
from caphuman.studio.live import photo_projection

SIZE = 256


def patterned_photo(pipe, state, size=SIZE):
    """A 'photo' of the head in ``state``: the head's own render with a strong, non-symmetric
    pattern painted over it (checks + a diagonal ramp), so correlation cannot come from the shading."""
    base = pipe.render(state, size).preview.astype(np.float64)
    r, c = np.mgrid[0:size, 0:size]
    pattern = 90.0 * (((r // 12) + (c // 12)) % 2) + 0.4 * (r + 2 * c) % 80
    img = np.clip(0.15 * base + 40 + pattern[..., None] * np.array([1.0, 0.7, 0.5]), 0, 255)
    return img.astype(np.uint8)


@pytest.fixture(scope="module")
def setup(builtin_pipeline):
    fitted = HeadState(pose=Pose(yaw=10.0))
    photo = patterned_photo(builtin_pipeline, fitted)
    texture = FaceTexture.from_projection(photo, photo_projection(builtin_pipeline, fitted, photo))
    return builtin_pipeline, fitted, photo, texture


def face_region(result):
    """Inner-face pixels: covered and inside the box of landmarks 17..67 (brows to chin)."""
    lm = result.landmarks_px[17:]
    (c0, r0), (c1, r1) = lm.min(0).astype(int), lm.max(0).astype(int)
    box = np.zeros_like(result.mask)
    box[r0:r1 + 1, c0:c1 + 1] = True
    return box & result.mask


def correlation(a, b):
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def test_textured_preview_shows_the_photo_in_the_face(setup):
    pipe, fitted, photo, texture = setup
    plain = pipe.render(fitted, SIZE, backdrop=photo)
    textured = pipe.render(fitted, SIZE, backdrop=photo, texture=texture)
    face = face_region(textured)
    gray = lambda im: im.astype(np.float64).mean(-1)[face]  # noqa: E731
    with_tex, without = correlation(gray(textured.preview), gray(photo)), correlation(gray(plain.preview), gray(photo))
    print(f"face correlation with the photo: textured {with_tex:.3f}, plain {without:.3f}")
    assert with_tex > 0.8 and without < 0.35 and with_tex - without > 0.4
    # the backdrop is the photo itself (not dimmed) in textured mode, as on the page
    outside = ~textured.mask
    np.testing.assert_array_equal(textured.preview[outside], photo[outside])


def test_texture_follows_the_head_when_it_turns(setup):
    """Posed away from the fitted pose, the head still wears the photo's pattern (not flat skin)."""
    pipe, fitted, photo, texture = setup
    moved = HeadState(pose=Pose(yaw=10.0, pitch=12.0))
    r = pipe.render(moved, SIZE, texture=texture)
    assert r.preview[r.mask].std() > 20  # pattern, not flat skin


@pytest.mark.parametrize("state", [HeadState(pose=Pose(yaw=10.0)),
                                   HeadState(pose=Pose(yaw=-20.0, pitch=5.0, eye_yaw=15.0),
                                             expression_controls={"smile": 0.6, "wink_left": 1.0})])
def test_hint_is_bit_identical_with_and_without_texture(setup, state):
    pipe, _, photo, texture = setup
    a = pipe.render(state, SIZE, backdrop=photo)
    b = pipe.render(state, SIZE, backdrop=photo, texture=texture)
    assert a.hint.dtype == b.hint.dtype and a.hint.tobytes() == b.hint.tobytes()
    assert np.array_equal(a.mask, b.mask)
    for k in a.maps:
        assert np.array_equal(a.maps[k], b.maps[k]), k
    assert not np.array_equal(a.preview, b.preview)


def test_service_preview_takes_the_projection(setup):
    """StudioService.preview: the projection option changes the picture only."""
    from caphuman.studio.service import StudioService

    pipe, fitted, photo, texture = setup
    service = StudioService.__new__(StudioService)  # only what preview() uses
    service.pipeline = pipe
    import threading

    service._render_lock = threading.Lock()
    projection = photo_projection(pipe, fitted, photo)
    a = service.preview(fitted, photo, SIZE)
    b = service.preview(fitted, photo, SIZE, projection=projection)
    assert a.hint.tobytes() == b.hint.tobytes()
    face = face_region(b)
    assert correlation(b.preview.astype(float).mean(-1)[face], photo.astype(float).mean(-1)[face]) > 0.8
