"""DECA's coarse encoder ``E_flame`` and its 236-vector (reference §4.2, §4.4).

Network: ResNet-50 trunk (torchvision names, under ``encoder.``) -> global average pool (7x7 at
224 input) -> 2048 -> Linear 1024 -> ReLU -> Linear 236 (``layers.0``, ``layers.2``). Input:
1x3x224x224 RGB in [0, 1] (no mean/std), the crop of :mod:`caphuman.face.crop`.

Split (in order): shape 100, tex 50, exp 50, pose 6 (global axis-angle 3 + jaw axis-angle 3,
radians), cam 3 (orthographic scale, tx, ty), light 27 (-> 9x3 SH, band x RGB).

The original copies weights leniently and silently runs a random DECA when ``deca_model.tar`` is
missing (§4.2, §7); here ``E_flame`` is loaded strictly and a missing file is an error.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from caphuman.controls.pose import ypr_from_axis_angle
from caphuman.controls.state import HeadState, Lighting, Placement, Pose, RANGES
from caphuman.face.crop import DECA_CROP, crop_ndc_to_frame_pixels, frame_pixels_to_ndc
from caphuman.face.resnet import resnet50_trunk

#: (name, size) of the 236-vector's fields, in order.
DECA_SPLIT = (("shape", 100), ("tex", 50), ("exp", 50), ("pose", 6), ("cam", 3), ("light", 27))
DECA_CODE_SIZE = sum(n for _, n in DECA_SPLIT)


class DecaEncoder(nn.Module):
    """``E_flame`` (random weights, nothing downloaded). ``width``: ResNet-50 base width (64 real),
    ``hidden``: 1024, ``out``: 236."""

    def __init__(self, width: int = 64, hidden: int = 1024, out: int = DECA_CODE_SIZE):
        super().__init__()
        self.encoder = resnet50_trunk(width)
        self.layers = nn.Sequential(nn.Linear(self.encoder.out_channels, hidden), nn.ReLU(),
                                    nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 3, 224, 224) RGB in [0, 1] -> (N, 236)."""
        f = self.encoder(x)[-1]
        return self.layers(f.mean(dim=(2, 3)))  # = AvgPool2d(7) at 224 input


def load_deca_encoder(path: str | os.PathLike, width: int = 64, hidden: int = 1024):
    """``E_flame`` from ``deca_model.tar`` (a dict holding ``E_flame``, ``E_detail``,
    ``D_detail`` state dicts), loaded safely (``safe_load.load_torch_file``) with strict keys; eval mode."""
    from caphuman.errors import InputError
    from caphuman.weights.safe_load import load_state_strict, load_torch_file

    ckpt = load_torch_file(path, "deca")
    if not isinstance(ckpt, dict) or "E_flame" not in ckpt:
        raise InputError(f"{path}: not a DECA checkpoint (no 'E_flame' entry)")
    net = DecaEncoder(width=width, hidden=hidden)
    load_state_strict(net, ckpt["E_flame"], f"{path} [E_flame]")
    return net.eval()


@dataclass
class DecaCode:
    """One DECA code (NumPy float32). ``pose``: [global axis-angle (3), jaw axis-angle (3)]
    radians; ``cam``: [s, tx, ty]; ``light``: (9, 3) SH (band x RGB)."""

    shape: np.ndarray
    tex: np.ndarray
    exp: np.ndarray
    pose: np.ndarray
    cam: np.ndarray
    light: np.ndarray

    @classmethod
    def from_vector(cls, v) -> "DecaCode":
        v = np.asarray(v, dtype=np.float32).reshape(-1)
        if v.size != DECA_CODE_SIZE:
            raise ValueError(f"DECA code must have {DECA_CODE_SIZE} values, got {v.size}")
        parts, i = {}, 0
        for name, n in DECA_SPLIT:
            parts[name] = v[i:i + n].copy()
            i += n
        parts["light"] = parts["light"].reshape(9, 3)
        return cls(**parts)

    def to_vector(self) -> np.ndarray:
        return np.concatenate([np.asarray(getattr(self, n), np.float32).reshape(-1) for n, _ in DECA_SPLIT])


def encode_crop(net, crop: np.ndarray) -> DecaCode:
    """Run ``E_flame`` on one crop (224, 224, 3) float in [0, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(crop.transpose(2, 0, 1)))[None].float()
    with torch.no_grad():
        v = net(x)[0].numpy()
    return DecaCode.from_vector(v)


def frame_linear_map(cam, tform: np.ndarray, size: int, crop: int = DECA_CROP) -> tuple[float, float, float]:
    """DECA camera + crop transform as the frame map ``ndc = a * (x, y) + (bx, by)`` for
    model-space x, y (metres). Chain (§4.4): orthographic camera -> crop NDC (y down) -> crop
    pixels (x 224) -> inverse ``tform`` -> frame pixels -> frame NDC (y up).

    Raises ValueError when ``tform`` rotates or shears (the crop rule never produces that)."""
    s, tx, ty = (float(c) for c in np.asarray(cam).reshape(3))
    model = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    p = np.stack([s * (model[:, 0] + tx), -s * (model[:, 1] + ty)], axis=-1)
    ndc = frame_pixels_to_ndc(crop_ndc_to_frame_pixels(p, tform, crop), size)
    b = ndc[0]
    ax, ay = ndc[1] - b, ndc[2] - b
    if abs(ax[1]) > 1e-6 * max(1.0, abs(ax[0])) or abs(ay[0]) > 1e-6 * max(1.0, abs(ay[1])) \
            or abs(ax[0] - ay[1]) > 1e-6 * max(1.0, abs(ax[0])):
        raise ValueError("crop transform rotates or shears; cannot express it as a placement")
    return float(ax[0]), float(b[0]), float(b[1])


def _clip_coeffs(v) -> list[float]:
    lo, hi = RANGES["coefficient"]
    return [float(x) for x in np.clip(np.asarray(v, dtype=np.float64), lo, hi)]


def head_state_from_deca(code: DecaCode, tform: np.ndarray, size: int, framing) -> HeadState:
    """Slider values for a DECA code: shape/expression/albedo coefficients (clipped to the
    slider range), yaw/pitch/roll from ``pose[:3]``, jaw degrees from ``pose[3]`` (the jaw's
    other two axis-angle components have no slider and are dropped), placement from
    cam + tform (:func:`frame_linear_map`), raw SH lighting."""
    from caphuman.render.camera import placement_from_frame_transform

    yaw, pitch, roll = ypr_from_axis_angle(code.pose[:3])
    a, bx, by = frame_linear_map(code.cam, tform, size)
    placement = placement_from_frame_transform(a, bx, by, framing)
    lo, hi = RANGES["jaw"]

    def clamp(name, v):
        lo, hi = RANGES[name]
        return float(min(max(v, lo), hi))

    return HeadState(
        shape=_clip_coeffs(code.shape), expression=_clip_coeffs(code.exp), albedo=_clip_coeffs(code.tex),
        pose=Pose(yaw=clamp("yaw", yaw), pitch=clamp("pitch", pitch), roll=clamp("roll", roll),
                  jaw=clamp("jaw", math.degrees(float(code.pose[3])))),
        placement=Placement(scale=clamp("scale", placement.scale), shift_x=clamp("shift_x", placement.shift_x),
                            shift_y=clamp("shift_y", placement.shift_y)),
        lighting=Lighting(sh=[[float(min(max(c, -10.0), 10.0)) for c in row] for row in code.light]),
    )
