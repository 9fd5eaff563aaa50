"""The head state the sliders edit, and the maps from human controls to model parameters."""

from caphuman.controls.state import (  # noqa: F401
    EXPRESSION_CONTROLS,
    HeadState,
    Lighting,
    Placement,
    Pose,
)
