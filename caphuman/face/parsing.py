"""Face parsing with BiSeNet (19 CelebAMask-HQ classes) and the face-only image (reference §3.2).

Network layout follows face-parsing.PyTorch so that ``79999_iter.pth`` loads strictly: ``cp``
(context path: ``cp.resnet`` ResNet-18 trunk, attention refinement ``cp.arm16/arm32``,
``cp.conv_head16/32``, ``cp.conv_avg``), ``ffm`` (feature fusion), ``conv_out`` (+ auxiliary
``conv_out16/32``, unused at inference). No ImageNet weights are downloaded at construction
(the original downloads ResNet-18 only to overwrite it). ``width`` (64 real) scales the trunk and
the heads for tiny test instances.

Input: RGB at native resolution, [0, 1] then ImageNet mean/std; output upsampled bilinearly
(align_corners=True) to the input size, argmax over classes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from caphuman.face.resnet import resnet18_trunk

#: Classes painted white in the face-only image: background, ears, earring, neck, necklace,
#: cloth, hair, hat. Kept: skin, brows, eyes, eyeglasses, nose, mouth, lips.
REMOVED_CLASSES = (0, 7, 8, 9, 14, 15, 16, 17, 18)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ConvBNReLU(nn.Module):
    def __init__(self, cin: int, cout: int, ks: int = 3, stride: int = 1, padding: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, ks, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class OutputHead(nn.Module):
    """3x3 ConvBNReLU then 1x1 classifier (no bias): ``conv``, ``conv_out``."""

    def __init__(self, cin: int, mid: int, n_classes: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, mid)
        self.conv_out = nn.Conv2d(mid, n_classes, 1, bias=False)

    def forward(self, x):
        return self.conv_out(self.conv(x))


class AttentionRefinement(nn.Module):
    """ConvBNReLU, then channel attention from global pooling: ``conv``, ``conv_atten``, ``bn_atten``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = ConvBNReLU(cin, cout)
        self.conv_atten = nn.Conv2d(cout, cout, 1, bias=False)
        self.bn_atten = nn.BatchNorm2d(cout)

    def forward(self, x):
        f = self.conv(x)
        a = torch.sigmoid(self.bn_atten(self.conv_atten(f.mean(dim=(2, 3), keepdim=True))))
        return f * a


class ContextPath(nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        c = 2 * width  # 128
        self.resnet = resnet18_trunk(width)
        self.arm16 = AttentionRefinement(4 * width, c)
        self.arm32 = AttentionRefinement(8 * width, c)
        self.conv_head32 = ConvBNReLU(c, c)
        self.conv_head16 = ConvBNReLU(c, c)
        self.conv_avg = ConvBNReLU(8 * width, c, 1, 1, 0)

    def forward(self, x):
        f8, f16, f32 = self.resnet(x)
        avg = self.conv_avg(f32.mean(dim=(2, 3), keepdim=True))
        s32 = self.arm32(f32) + F.interpolate(avg, size=f32.shape[2:], mode="nearest")
        up32 = self.conv_head32(F.interpolate(s32, size=f16.shape[2:], mode="nearest"))
        s16 = self.arm16(f16) + up32
        up16 = self.conv_head16(F.interpolate(s16, size=f8.shape[2:], mode="nearest"))
        return f8, up16, up32


class FeatureFusion(nn.Module):
    """``convblk`` (1x1 ConvBNReLU) then squeeze-excitation ``conv1``/``conv2``; out = f * a + f."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.convblk = ConvBNReLU(cin, cout, 1, 1, 0)
        self.conv1 = nn.Conv2d(cout, cout // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(cout // 4, cout, 1, bias=False)

    def forward(self, a, b):
        f = self.convblk(torch.cat([a, b], dim=1))
        att = torch.sigmoid(self.conv2(F.relu(self.conv1(f.mean(dim=(2, 3), keepdim=True)))))
        return f * att + f


class BiSeNet(nn.Module):
    """BiSeNet face parser. ``forward(x)`` -> main logits (N, n_classes, H, W) at input size."""

    def __init__(self, n_classes: int = 19, width: int = 64):
        super().__init__()
        self.cp = ContextPath(width)
        self.ffm = FeatureFusion(4 * width, 4 * width)
        self.conv_out = OutputHead(4 * width, 4 * width, n_classes)
        self.conv_out16 = OutputHead(2 * width, width, n_classes)
        self.conv_out32 = OutputHead(2 * width, width, n_classes)

    def forward(self, x):
        f8, cp8, _ = self.cp(x)
        out = self.conv_out(self.ffm(f8, cp8))
        return F.interpolate(out, size=x.shape[2:], mode="bilinear", align_corners=True)


def load_bisenet(path: str | os.PathLike, n_classes: int = 19, width: int = 64) -> BiSeNet:
    """BiSeNet from a ``79999_iter.pth``-layout state dict (strict, safe unpickling); eval."""
    from caphuman.errors import InputError
    from caphuman.weights.safe_load import load_state_strict, load_torch_file

    state = load_torch_file(path, "face_parsing")
    if not isinstance(state, dict):
        raise InputError(f"{path}: not a state dict")
    net = BiSeNet(n_classes=n_classes, width=width)
    load_state_strict(net, state, str(path))
    return net.eval()


def parse_face(net: BiSeNet, rgb: np.ndarray) -> np.ndarray:
    """Class map (H, W) int64 for an RGB uint8 image at its native resolution."""
    x = torch.from_numpy(rgb.astype(np.float32) / 255.0).permute(2, 0, 1)[None]
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net.eval()((x - mean) / std)
    return logits[0].argmax(0).numpy()


def face_only(rgb: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """Copy of ``rgb`` with the :data:`REMOVED_CLASSES` pixels painted white (255)."""
    out = rgb.copy()
    out[np.isin(classes, REMOVED_CLASSES)] = 255
    return out
