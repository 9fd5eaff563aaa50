"""Sweeps and batch generation: many images from one command, resumable, on one or many processes.

* :mod:`.sweep` -- a head control (or several: a grid) stepped over a range;
* :mod:`.jobs` -- one job per JSONL line, validated (with line numbers) before anything runs;
* :mod:`.manifest` -- the append-only record of finished jobs, atomic file writes, resume;
* :mod:`.engine` -- the models, the per-photo reference cache and the batched pipeline call;
* :mod:`.runner` -- the loop: shard, plan, batch, write, record; progress with ETA;
* :mod:`.distributed` -- rank / world size from ``accelerate launch`` or ``torchrun`` (gloo);
* :mod:`.contact_sheet` -- the labelled grid image of a sweep.
"""
