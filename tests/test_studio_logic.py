"""Studio logic without a server: sliders <-> state, pose transfer, host choice, degraded modes."""

from __future__ import annotations

import pytest

from caphuman.controls.state import HeadState
from caphuman.errors import InputError, MissingWeightsError
from caphuman.studio import serving
from caphuman.studio.controls import SLIDERS, state_from_values, transfer, values_from_state
from caphuman.studio.generation import GenerationParams


def test_sliders_round_trip_and_keep_identity():
    base = HeadState(shape=[0.5, -0.2], albedo=[0.1], expression=[0.0] * 12 + [0.7])
    values = values_from_state(base)
    values[[s.key for s in SLIDERS].index("pose.yaw")] = 33.0
    values[[s.key for s in SLIDERS].index("expr.smile")] = 0.5
    state = state_from_values(base, values).validated()
    assert state.pose.yaw == 33.0 and state.expression_controls["smile"] == 0.5
    assert state.shape == [0.5, -0.2] and state.albedo == [0.1] and state.expression[12] == 0.7
    assert values_from_state(state)[[s.key for s in SLIDERS].index("pose.yaw")] == 33.0


def test_transfer_modes():
    cur = HeadState()
    src = HeadState()
    src.pose.yaw, src.lighting.azimuth, src.placement.scale = 20.0, 45.0, 1.3
    out = transfer(cur, src, ["pose"])
    assert out.pose.yaw == 20.0 and out.lighting.azimuth == cur.lighting.azimuth and out.placement.scale == 1.0
    with pytest.raises(InputError):
        transfer(cur, src, ["hair"])


def test_host_binding(monkeypatch):
    monkeypatch.delenv("SPACE_ID", raising=False)
    assert serving.resolve_host(None) == "127.0.0.1"
    assert serving.resolve_host("0.0.0.0") == "0.0.0.0"
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert serving.resolve_host(None) == "0.0.0.0"


@pytest.mark.parametrize("kw, needle", [(dict(num_images=9), "number of images"), (dict(prompt=""), "prompt"),
                                        (dict(steps=float("nan")), "finite"), (dict(scheduler="euler"), "scheduler")])
def test_generation_params_refused(kw, needle):
    args = dict(prompt="a person")
    args.update(kw)
    with pytest.raises(InputError, match=needle):
        GenerationParams(**args).validated()


def test_generate_without_weights_explains(head_path):
    from caphuman.studio.service import StudioService

    service = StudioService(head=head_path, weights=None, device="cpu")
    import numpy as np

    with pytest.raises(MissingWeightsError, match="--weights"):
        service.generate(np.zeros((64, 64, 3), np.uint8), HeadState(), GenerationParams(prompt="a person"))
    assert "not available" in service.environment().markdown()
    assert service.preview(HeadState(), None, 128).preview.shape == (128, 128, 3)
