"""Diffusion backend: the CapFace control network and the CapHuman sampling pipeline.

Nothing heavy is imported here; use the submodules:

* :mod:`caphuman.diffusion.capface`   -- ``CapFaceModel`` (ControlNet trunk + mask head + projections)
* :mod:`caphuman.diffusion.gating`    -- residual scaling and hard mask gating
* :mod:`caphuman.diffusion.pipeline`  -- ``CapHumanPipeline`` (a diffusers ``DiffusionPipeline``)
* :mod:`caphuman.diffusion.schedulers`-- DDIM configured as the original, DPM++ factory
* :mod:`caphuman.diffusion.identity`  -- identity-encoder seam (FaceNet embedding + face-only image)
* :mod:`caphuman.diffusion.convert`   -- original ``caphuman.ckpt`` + SD1.5 backbone -> diffusers folder
"""
