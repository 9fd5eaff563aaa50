"""Photo analysis: image intake, face detection, 3D fit and identity encoders.

Modules (one concept each): :mod:`intake` (any image -> RGB uint8), :mod:`detection` (faces with
two backends), :mod:`crop` (square frame and DECA crop maths), :mod:`deca` (DECA coarse encoder),
:mod:`facenet` (InceptionResnetV1), :mod:`parsing` (BiSeNet face parser), :mod:`clip_image`
(CLIP vision tokens), :mod:`similarity`, :mod:`fit` (landmark fit without DECA),
:mod:`transfer` (pose-photo modes), :mod:`analysis` (the cached per-reference result) and
:mod:`output_check` (a generated image against the requested pose and the reference identity).
Heavy libraries are imported inside functions.
"""
