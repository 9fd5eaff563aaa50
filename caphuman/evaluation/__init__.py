"""``python -m caphuman evaluate``: the CapHuman paper's HumanIPHC-style protocol on your own material.

reference photos x prompts x head conditions x seeds -> images (through the batch engine,
:mod:`caphuman.batch`, so generation is resumable) -> scores per image -> CSV, summary JSON, plot.

* :mod:`.inputs` -- the folder of photos, the prompt list, the head conditions, the seeds; the jobs plan;
* :mod:`.metrics` -- the numbers: cosine, CLIP score, yaw bins, RMSE, summary statistics (pure NumPy);
* :mod:`.clip_score` -- text alignment with CLIP ViT-L/14's text and image projections;
* :mod:`.scoring` -- one generated image -> identity, text alignment, head-control errors (or reasons);
* :mod:`.report` -- per-image CSV, summary JSON (with the paper's numbers beside ours) and the plot.
"""
