"""Identity similarity between two photos, for users and for evaluation.

Uses an independent recogniser: ArcFace from insightface's buffalo_l pack when present, else
FaceNet (InceptionResnetV1, the model CapHuman conditions on, so less independent). The result
says which one was used. Cosine similarity of L2-normalised embeddings, in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from caphuman.errors import MissingWeightsError


@dataclass
class Similarity:
    """``score``: cosine similarity in [-1, 1]; ``recognizer``: "arcface" or "facenet";
    ``warnings``: e.g. several faces found."""

    score: float
    recognizer: str
    warnings: list[str]


def cosine(a, b) -> float:
    """Cosine similarity of two embedding vectors (any scale), in [-1, 1]."""
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def _embed_arcface(detector, rgb, what):
    from caphuman.face.detection import detect_faces

    det = detect_faces(rgb, detector=detector, what=what)
    if det.face.embedding is None:
        raise MissingWeightsError("the insightface pack has no recognition model")
    return det.face.embedding, det.warnings


def identity_similarity(image_a, image_b, recognizer: str = "auto", root=None,
                        facenet=None) -> Similarity:
    """Cosine similarity of the largest faces in two images (paths, bytes, arrays, PIL).

    ``recognizer``: "auto" (ArcFace if insightface models are present, else FaceNet),
    "arcface" or "facenet". ``facenet``: an already built InceptionResnetV1 (tests)."""
    from caphuman.face.detection import InsightFaceDetector, detect_faces, insightface_model_dir
    from caphuman.face.intake import load_image

    a, b = load_image(image_a), load_image(image_b)
    notes: list[str] = []
    d = insightface_model_dir(root)
    if recognizer in ("auto", "arcface") and d is not None:
        det = InsightFaceDetector(d)
        if det.recognizer is not None:
            ea, wa = _embed_arcface(det, a, "image A")
            eb, wb = _embed_arcface(det, b, "image B")
            return Similarity(cosine(ea, eb), "arcface", wa + wb)
    if recognizer == "arcface":
        raise MissingWeightsError("ArcFace needs the insightface buffalo_l pack; run `python -m caphuman doctor`")
    if recognizer == "auto":
        notes.append("insightface ArcFace not available: using FaceNet (the model CapHuman is conditioned on)")
    from caphuman.face.facenet import facenet_embedding, load_facenet
    from caphuman.weights.registry import local_path

    net = facenet if facenet is not None else load_facenet(local_path("facenet", root))
    embs = []
    for img, what in ((a, "image A"), (b, "image B")):
        det = detect_faces(img, what=what)
        notes += [w for w in det.warnings if w not in notes]
        embs.append(facenet_embedding(net, img, det.face.box))
    return Similarity(cosine(embs[0], embs[1]), "facenet", notes)
