"""FaceNet identity embedding: InceptionResnetV1, key-compatible with facenet-pytorch's
``20180402-114759-vggface2.pt`` (reference §3.3).

Input: a face crop 160x160 RGB, standardised as (x - 127.5) / 128 (x in 0..255). Output:
L2-normalised 512-d vector. The original's no-face fallback feeds the whole image in [0, 1]
without this standardisation; here the input is always standardised (and, with no face, the
caller says so in its warnings).

``width`` (1.0 real) scales every channel count and ``blocks`` (5, 10, 5) the repeat counts, so
a tiny instance can stand in for tests. ``num_classes`` (8631, VGGFace2) keeps the ``logits``
layer that the released file contains; it is unused for embeddings.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

#: Side of FaceNet's input crop (pixels).
FACENET_SIZE = 160


class BasicConv2d(nn.Module):
    """conv (no bias) -> BatchNorm(eps 1e-3) -> ReLU; parameter names ``conv``, ``bn``."""

    def __init__(self, cin: int, cout: int, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU(inplace=False)

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))


class _Residual(nn.Module):
    """Inception-ResNet block: branches -> concat -> 1x1 ``conv2d`` (bias) -> x + scale * y."""

    def __init__(self, channels: int, branches: list[nn.Module], concat: int, scale: float, relu: bool):
        super().__init__()
        for i, b in enumerate(branches):
            setattr(self, f"branch{i}", b)
        self._n = len(branches)
        self.conv2d = nn.Conv2d(concat, channels, 1)
        self.scale = scale
        self.relu = nn.ReLU(inplace=False) if relu else None

    def forward(self, x):
        y = torch.cat([getattr(self, f"branch{i}")(x) for i in range(self._n)], 1)
        y = x + self.conv2d(y) * self.scale
        return self.relu(y) if self.relu is not None else y


def _block35(c: int, w, scale: float) -> _Residual:
    a = w(32)
    return _Residual(c, [
        BasicConv2d(c, a, 1),
        nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, a, 3, 1, 1)),
        nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, a, 3, 1, 1), BasicConv2d(a, a, 3, 1, 1)),
    ], 3 * a, scale, True)


def _block17(c: int, w, scale: float) -> _Residual:
    a = w(128)
    return _Residual(c, [
        BasicConv2d(c, a, 1),
        nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, a, (1, 7), 1, (0, 3)), BasicConv2d(a, a, (7, 1), 1, (3, 0))),
    ], 2 * a, scale, True)


def _block8(c: int, w, scale: float, relu: bool = True) -> _Residual:
    a = w(192)
    return _Residual(c, [
        BasicConv2d(c, a, 1),
        nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, a, (1, 3), 1, (0, 1)), BasicConv2d(a, a, (3, 1), 1, (1, 0))),
    ], 2 * a, scale, relu)


class _Mixed(nn.Module):
    """Reduction block: parallel branches (the last one a 3x3/2 max-pool) concatenated."""

    def __init__(self, branches: list[nn.Module]):
        super().__init__()
        for i, b in enumerate(branches):
            setattr(self, f"branch{i}", b)
        self._n = len(branches)

    def forward(self, x):
        return torch.cat([getattr(self, f"branch{i}")(x) for i in range(self._n)], 1)


class InceptionResnetV1(nn.Module):
    """FaceNet trunk + 512-d embedding head (real architecture by default).

    ``forward(x)``: x (N, 3, H, W) standardised as (pixel - 127.5) / 128 -> (N, embedding_size)
    unit vectors. Dropout (p 0.6) is inactive in eval mode.
    """

    def __init__(self, width: float = 1.0, blocks: tuple[int, int, int] = (5, 10, 5),
                 embedding_size: int = 512, num_classes: int | None = 8631, dropout_prob: float = 0.6):
        super().__init__()

        def w(n: int) -> int:
            return max(1, int(round(n * width)))

        self.conv2d_1a = BasicConv2d(3, w(32), 3, 2)
        self.conv2d_2a = BasicConv2d(w(32), w(32), 3, 1)
        self.conv2d_2b = BasicConv2d(w(32), w(64), 3, 1, 1)
        self.maxpool_3a = nn.MaxPool2d(3, 2)
        self.conv2d_3b = BasicConv2d(w(64), w(80), 1)
        self.conv2d_4a = BasicConv2d(w(80), w(192), 3, 1)
        c = w(256)
        self.conv2d_4b = BasicConv2d(w(192), c, 3, 2)
        self.repeat_1 = nn.Sequential(*[_block35(c, w, 0.17) for _ in range(blocks[0])])
        self.mixed_6a = _Mixed([
            BasicConv2d(c, w(384), 3, 2),
            nn.Sequential(BasicConv2d(c, w(192), 1), BasicConv2d(w(192), w(192), 3, 1, 1), BasicConv2d(w(192), w(256), 3, 2)),
            nn.MaxPool2d(3, 2),
        ])
        c = w(384) + w(256) + c  # 896
        self.repeat_2 = nn.Sequential(*[_block17(c, w, 0.10) for _ in range(blocks[1])])
        self.mixed_7a = _Mixed([
            nn.Sequential(BasicConv2d(c, w(256), 1), BasicConv2d(w(256), w(384), 3, 2)),
            nn.Sequential(BasicConv2d(c, w(256), 1), BasicConv2d(w(256), w(256), 3, 2)),
            nn.Sequential(BasicConv2d(c, w(256), 1), BasicConv2d(w(256), w(256), 3, 1, 1), BasicConv2d(w(256), w(256), 3, 2)),
            nn.MaxPool2d(3, 2),
        ])
        c = w(384) + w(256) + w(256) + c  # 1792
        self.repeat_3 = nn.Sequential(*[_block8(c, w, 0.20) for _ in range(blocks[2])])
        self.block8 = _block8(c, w, 1.0, relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout_prob)
        self.last_linear = nn.Linear(c, embedding_size, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_size, eps=0.001, momentum=0.1, affine=True)
        self.logits = nn.Linear(embedding_size, num_classes) if num_classes else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
                     "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8"):
            x = getattr(self, name)(x)
        x = self.dropout(self.avgpool_1a(x).flatten(1))
        x = self.last_bn(self.last_linear(x))
        return F.normalize(x, p=2, dim=1)


def load_facenet(path: str | os.PathLike, **kwargs) -> InceptionResnetV1:
    """InceptionResnetV1 from a ``20180402-114759-vggface2.pt``-layout state dict (strict,
    safe unpickling, see ``safe_load``); eval mode. ``kwargs`` go to the constructor (tests use tiny widths)."""
    from caphuman.errors import InputError
    from caphuman.weights.safe_load import load_state_strict, load_torch_file

    state = load_torch_file(path, "facenet")
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict")
    if "logits.weight" not in state:
        kwargs.setdefault("num_classes", None)
    net = InceptionResnetV1(**kwargs)
    load_state_strict(net, state, str(path))
    return net.eval()


def facenet_input(rgb: np.ndarray, box: tuple[float, float, float, float] | None,
                  size: int = FACENET_SIZE) -> np.ndarray:
    """The 160x160 crop FaceNet sees, float32 (3, size, size) standardised (x - 127.5) / 128.

    Like facenet-pytorch's MTCNN with margin 0: box clipped to the image and truncated to int,
    PIL crop + bilinear resize. ``box=None``: the whole image (still standardised)."""
    from PIL import Image

    h, w = rgb.shape[:2]
    img = Image.fromarray(rgb)
    if box is not None:
        l, t, r, b = box
        l, t = int(max(l, 0)), int(max(t, 0))
        r, b = int(min(r, w)), int(min(b, h))
        if r - l >= 2 and b - t >= 2:
            img = img.crop((l, t, r, b))
    img = img.resize((size, size), Image.BILINEAR)
    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
    return (x - 127.5) / 128.0


def facenet_embedding(net: InceptionResnetV1, rgb: np.ndarray, box) -> np.ndarray:
    """512-d float32 embedding of the face in ``box`` of ``rgb`` (L2-normalised by FaceNet itself;
    any recogniser with FaceNet's input convention works, on whatever device it sits)."""
    param = next(net.parameters(), None)
    x = torch.from_numpy(facenet_input(rgb, box))[None]
    if param is not None:
        x = x.to(device=param.device, dtype=param.dtype)
    with torch.no_grad():
        return net.eval()(x)[0].float().cpu().numpy().astype(np.float32)
