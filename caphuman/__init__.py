"""caphuman: identity-preserving portraits from one photo, with numeric 3D head control.

The package is laid out along the data flow::

    photo -> caphuman.face    (intake, detection, identity encoders, 3D fit)
          -> caphuman.head    (head models: FLAME or the built-in head; skinning; landmarks)
          -> caphuman.controls(the head state the sliders edit: pose, expression, light, placement)
          -> caphuman.render  (rasteriser, 9-channel hint, preview image, mesh export)
          -> caphuman.diffusion (CapFace + SD1.5 UNet pipeline) -> portrait

Importing this package is cheap: torch, diffusers and friends load lazily inside the modules
that need them.
"""

__version__ = "0.1.0"
