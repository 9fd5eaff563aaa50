import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # test helpers (onnx_models)
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def synthetic_head():
    from caphuman.testing.synthetic_head import build_synthetic_head

    return build_synthetic_head()


@pytest.fixture(scope="session")
def builtin_head():
    from caphuman.head.model_data import HeadModelData
    from caphuman.head.resolve import BUILTIN_PATH

    assert BUILTIN_PATH.is_file(), "the built-in head asset must be committed"
    return HeadModelData.load_npz(BUILTIN_PATH)


@pytest.fixture(scope="session")
def builtin_pipeline(builtin_head):
    from caphuman.preview import HeadPreviewPipeline

    return HeadPreviewPipeline(builtin_head)


@pytest.fixture(scope="session")
def synthetic_pipeline(synthetic_head):
    from caphuman.preview import HeadPreviewPipeline

    return HeadPreviewPipeline(synthetic_head)


# ---------------------------------------------------------------- studio (app, API, browser)

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def head_path(tmp_path_factory) -> str:
    """The built-in head when present, else the synthetic test head."""
    from caphuman.head.resolve import BUILTIN_PATH

    if BUILTIN_PATH.is_file():
        return "builtin"
    from caphuman.testing.synthetic_head import build_synthetic_head

    path = tmp_path_factory.mktemp("head") / "synthetic_head.npz"
    build_synthetic_head().save_npz(path)
    return str(path)


def make_face_photo(path: Path, size=(320, 400)) -> Path:
    """A simple drawn face (skin ellipse, eyes, mouth) as a JPEG; a stand-in for assets/examples."""
    import cv2

    w, h = size
    img = np.full((h, w, 3), (200, 210, 225), np.uint8)
    cx, cy = w // 2, h // 2
    cv2.ellipse(img, (cx, cy), (w // 4, h // 3), 0, 0, 360, (140, 170, 215), -1)
    for dx in (-w // 10, w // 10):
        cv2.circle(img, (cx + dx, cy - h // 12), w // 40 + 2, (40, 40, 40), -1)
    cv2.ellipse(img, (cx, cy + h // 7), (w // 12, h // 40 + 1), 0, 0, 180, (60, 60, 150), 3)
    cv2.imwrite(str(path), img)
    return path


@pytest.fixture(scope="session")
def example_photo(tmp_path_factory) -> str:
    """An example portrait from assets/examples when present, else a drawn face."""
    examples = sorted((ROOT / "assets" / "examples").glob("*.jpg"))
    if examples:
        return str(examples[0])
    return str(make_face_photo(tmp_path_factory.mktemp("photos") / "face.jpg"))


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A tiny random CapHuman model folder (CPU, seconds)."""
    from caphuman.testing.tiny_model import write_tiny_model

    return str(write_tiny_model(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def studio(head_path, tiny_weights):
    """The studio served in-process on a free 127.0.0.1 port: yields (url, service)."""
    from demo.launch import create_app, launch_kwargs

    service, demo = create_app(head=head_path, weights=tiny_weights, device="cpu", warmup=False)
    if tiny_weights:
        service.warm_up()
    port = free_port()
    kwargs = launch_kwargs("127.0.0.1", port)
    demo.launch(prevent_thread_lock=True, quiet=True, **kwargs)
    try:
        yield f"http://127.0.0.1:{port}/", service
    finally:
        demo.close()
