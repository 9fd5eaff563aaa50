import os
import sys
from pathlib import Path

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
