"""Tiny ONNX graphs shaped like insightface's buffalo_l models (built by the tests, no download).

* ``det_tiny.onnx``: SCRFD-shaped detector, fixed input 1x3x128x128, 9 outputs (scores, boxes,
  keypoints for strides 8/16/32, 2 anchors). Its score is high only for stride-32 cells whose
  32x32 area is white, so a white square at a cell gives exactly one face box on that cell.
* ``rec_tiny.onnx``: recogniser-shaped graph 1x3x112x112 -> 1x512 (pooled pixels x a fixed matrix).
* ``lmk_tiny.onnx``: 3-D 68-landmark graph 1x3x192x192 -> 1x3309 (a fixed face layout, by default
  :func:`face_layout_68`; :func:`layout_for_pixels` gives one that lands on chosen pixels).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SIDE = 128
KPS = np.array([0.3, 0.35, 0.7, 0.35, 0.5, 0.55, 0.35, 0.78, 0.65, 0.78], np.float32)


def _save(graph, path: Path) -> None:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def build_detector(path: Path) -> None:
    nodes, inits, outs = [], [], {"score": [], "bbox": [], "kps": []}
    nodes.append(helper.make_node("ReduceMean", ["input.1"], ["grey"], axes=[1], keepdims=1))
    for s in (8, 16, 32):
        n = (SIDE // s) ** 2 * 2
        nodes.append(helper.make_node("AveragePool", ["grey"], [f"pool{s}"], kernel_shape=[s, s], strides=[s, s]))
        inits.append(numpy_helper.from_array(np.array([-1, 1], np.int64), f"shape{s}"))
        nodes.append(helper.make_node("Reshape", [f"pool{s}", f"shape{s}"], [f"flat{s}"]))
        nodes.append(helper.make_node("Concat", [f"flat{s}", f"flat{s}"], [f"pair{s}"], axis=1))
        nodes.append(helper.make_node("Reshape", [f"pair{s}", f"shape{s}"], [f"v{s}"]))
        gain = 12.0 if s == 32 else 0.0
        inits.append(numpy_helper.from_array(np.array([gain], np.float32), f"gain{s}"))
        inits.append(numpy_helper.from_array(np.array([-0.6 * gain - 10.0 * (gain == 0)], np.float32), f"off{s}"))
        nodes.append(helper.make_node("Mul", [f"v{s}", f"gain{s}"], [f"m{s}"]))
        nodes.append(helper.make_node("Add", [f"m{s}", f"off{s}"], [f"a{s}"]))
        nodes.append(helper.make_node("Sigmoid", [f"a{s}"], [f"score_{s}"]))
        inits.append(numpy_helper.from_array(np.tile(np.array([0, 0, 1, 1], np.float32), (n, 1)), f"bconst{s}"))
        nodes.append(helper.make_node("Identity", [f"bconst{s}"], [f"bbox_{s}"]))
        inits.append(numpy_helper.from_array(np.tile(KPS, (n, 1)), f"kconst{s}"))
        nodes.append(helper.make_node("Identity", [f"kconst{s}"], [f"kps_{s}"]))
        outs["score"].append(helper.make_tensor_value_info(f"score_{s}", TensorProto.FLOAT, [n, 1]))
        outs["bbox"].append(helper.make_tensor_value_info(f"bbox_{s}", TensorProto.FLOAT, [n, 4]))
        outs["kps"].append(helper.make_tensor_value_info(f"kps_{s}", TensorProto.FLOAT, [n, 10]))
    graph = helper.make_graph(
        nodes, "det_tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, SIDE, SIDE])],
        outs["score"] + outs["bbox"] + outs["kps"], inits)
    _save(graph, path)


def build_recognizer(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((3 * 8 * 8, 512)).astype(np.float32)
    nodes = [
        helper.make_node("AveragePool", ["input.1"], ["p"], kernel_shape=[14, 14], strides=[14, 14]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["683"]),
    ]
    graph = helper.make_graph(
        nodes, "rec_tiny", [helper.make_tensor_value_info("input.1", TensorProto.FLOAT, [1, 3, 112, 112])],
        [helper.make_tensor_value_info("683", TensorProto.FLOAT, [1, 512])], [numpy_helper.from_array(w, "w")])
    _save(graph, path)


def face_layout_68() -> np.ndarray:
    """A plausible frontal 68-point layout in [-1, 1] (x right, y down), z = 0."""
    t = np.linspace(-np.pi * 0.45, np.pi * 0.45, 17)
    jaw = np.stack([0.8 * np.sin(t), 0.1 + 0.75 * np.cos(t) * 0.9], 1)
    brows = np.stack([np.r_[np.linspace(-0.65, -0.15, 5), np.linspace(0.15, 0.65, 5)], np.full(10, -0.45)], 1)
    nose = np.r_[np.stack([np.zeros(4), np.linspace(-0.3, 0.05, 4)], 1),
                 np.stack([np.linspace(-0.15, 0.15, 5), np.full(5, 0.12)], 1)]
    eye = lambda cx: np.stack([cx + 0.15 * np.cos(np.linspace(0, 2 * np.pi, 7)[:-1]),
                               -0.25 + 0.06 * np.sin(np.linspace(0, 2 * np.pi, 7)[:-1])], 1)
    mouth_o = np.stack([0.3 * np.cos(np.linspace(np.pi, -np.pi, 13)[:-1]), 0.45 + 0.1 * np.sin(np.linspace(np.pi, -np.pi, 13)[:-1])], 1)
    mouth_i = np.stack([0.2 * np.cos(np.linspace(np.pi, -np.pi, 9)[:-1]), 0.45 + 0.04 * np.sin(np.linspace(np.pi, -np.pi, 9)[:-1])], 1)
    xy = np.concatenate([jaw, brows, nose, eye(-0.35), eye(0.35), mouth_o, mouth_i])
    assert xy.shape == (68, 2)
    return np.concatenate([xy, np.zeros((68, 1))], 1).astype(np.float32)


def layout_for_pixels(points: np.ndarray, box=(32.0, 32.0, 64.0, 64.0), input_size: int = 192) -> np.ndarray:
    """The landmark graph's output (68, 3) that insightface maps to the photo pixels ``points``
    (68, 2) for a face detected at ``box``: it crops a square of 1.5 x the box's longer side around
    the box centre to ``input_size`` and reads outputs as (x, y) in [-1, 1] of that crop."""
    l, t, r, b = box
    centre = np.array([(l + r) / 2, (t + b) / 2])
    scale = input_size / (max(r - l, b - t) * 1.5)
    xy = (np.asarray(points, np.float64) - centre) * scale / (input_size // 2)
    return np.concatenate([xy, np.zeros((len(xy), 1))], 1).astype(np.float32)


def build_landmarks(path: Path, layout: np.ndarray | None = None) -> None:
    rows = np.zeros((1103, 3), np.float32)  # insightface reads the last 68 of 1103 3-D points
    rows[-68:] = face_layout_68() if layout is None else layout
    bias = rows.reshape(1, -1)
    w = np.zeros((3 * 8 * 8, 3309), np.float32)
    nodes = [
        helper.make_node("AveragePool", ["data"], ["p"], kernel_shape=[24, 24], strides=[24, 24]),
        helper.make_node("Flatten", ["p"], ["f"], axis=1),
        helper.make_node("MatMul", ["f", "w"], ["m"]),
        helper.make_node("Add", ["m", "b"], ["fc1"]),
    ]
    graph = helper.make_graph(
        nodes, "lmk_tiny", [helper.make_tensor_value_info("data", TensorProto.FLOAT, [1, 3, 192, 192])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, [1, 3309])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias.astype(np.float32), "b")])
    _save(graph, path)


def build_pack(folder: Path, layout: np.ndarray | None = None) -> Path:
    """A buffalo_l-like folder with the three tiny graphs (``layout``: see :func:`build_landmarks`)."""
    folder.mkdir(parents=True, exist_ok=True)
    build_landmarks(folder / "1k3d68.onnx", layout)
    build_detector(folder / "det_10g.onnx")
    build_recognizer(folder / "w600k_r50.onnx")
    return folder


def white_square_image(side: int = SIDE, cell: tuple[int, int] = (1, 1)) -> np.ndarray:
    """Black RGB image with one white 32x32 stride-32 cell at (col, row)."""
    img = np.zeros((side, side, 3), np.uint8)
    c, r = cell
    img[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32] = 255
    return img
