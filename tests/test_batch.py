"""Sweeps and batch jobs on the tiny model (CPU, 64², 1-2 steps): a 6-job file with a sweep end to end,
re-running does nothing, a killed run resumes with every job done exactly once, two gloo processes
make the same images as one, invalid lines are reported by line number."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import free_port  # noqa: E402
from tolerances import assert_close_scaled, sampling_growth  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = str(ROOT / "assets" / "examples" / "astronaut.jpg")
HOPPER = str(ROOT / "assets" / "examples" / "grace_hopper.jpg")
FAST = {"steps": 2, "resolution": 64}

SIX_JOBS = [
    {"id": "plain", "reference": ASTRONAUT, "prompt": "a portrait", "seed": 1, **FAST},
    {"id": "turned", "reference": HOPPER, "prompt": "a photo of a person", "seed": 2, "head": {"pose.yaw": 25, "smile": 0.5},
     **FAST},
    {"id": "yaw-sweep", "reference": ASTRONAUT, "prompt": "a portrait", "seed": 3, "sweep": "pose.yaw=-60:60:3", **FAST},
    {"reference": HOPPER, "prompt": "a portrait", "num_images": 2, **FAST},  # default id and seed
    {"id": "light", "reference": ASTRONAUT, "prompt": "a portrait, side light", "negative_prompt": "blurry", "seed": 5,
     "head": {"lighting": {"azimuth": 60}}, **FAST},
    {"id": "one-step", "reference": HOPPER, "prompt": "a portrait", "seed": 6, "steps": 1, "guidance": 3.0,
     "resolution": 64},
]


def _write_jobs(path: Path, jobs) -> Path:
    path.write_text("".join((j if isinstance(j, str) else json.dumps(j)) + "\n" for j in jobs))
    return path


def _main(*args) -> int:
    from caphuman.__main__ import main

    return main([str(a) for a in args])


def _batch_args(jobs, out, weights, *extra):
    return ["batch", jobs, "--out", out, "--weights", weights, "--device", "cpu", "--no-progress", *extra]


def _env(**extra):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("CAPHUMAN_DEBUG", None)
    env.update({k: str(v) for k, v in extra.items()})
    return env


class one_thread:
    """In-process runs on one torch thread, like the 1-thread worker processes (CPU kernels round
    differently with another thread count)."""

    def __enter__(self):
        self.n = torch.get_num_threads()
        torch.set_num_threads(1)

    def __exit__(self, *exc):
        torch.set_num_threads(self.n)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every in-process run here on one thread: like the worker processes, and a 2-thread pool on a busy
    2-core machine stalls small ops badly."""
    with one_thread():
        yield


def _records(out: Path) -> list[dict]:
    from caphuman.batch.manifest import read_records

    return read_records(out / "manifest.jsonl")


def _pixels(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def _outputs(out: Path) -> set[str]:
    """Every file a run made (the manifest and the lock aside)."""
    return {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()
            and p.name not in ("manifest.jsonl", ".caphuman-batch.lock")}


@pytest.fixture(scope="module")
def six(tmp_path_factory, tiny_weights):
    """The 6-job file run once, in process, on one thread: (jobs file, out folder, stats)."""
    d = tmp_path_factory.mktemp("six")
    jobs = _write_jobs(d / "jobs.jsonl", SIX_JOBS)
    out = d / "out"
    with one_thread():  # (module fixtures run outside the autouse one)
        assert _main(*_batch_args(jobs, out, tiny_weights, "--batch-size", "4", "--stats-json", d / "stats.json")) == 0
    return jobs, out, json.loads((d / "stats.json").read_text())


# ---------------------------------------------------------------------------- end to end
def test_six_jobs_with_a_sweep_end_to_end(six):
    jobs, out, stats = six
    recs = _records(out)
    assert len(recs) == 6 and all(r["status"] == "done" and r["error"] is None for r in recs)
    assert stats["images"] == 9 and stats["jobs_done"] == 6
    assert stats["pipeline_calls"] == 3  # 8 same-settings images in 2 calls of 4, + the 1-step job
    listed = {f for r in recs for f in r["files"]}
    assert listed == _outputs(out)  # the manifest lists every output, and only outputs
    for f in listed:
        if f.endswith(".png") and not f.endswith("contact_sheet.png"):
            assert _pixels(out / f).shape == (64, 64, 3)
    sweep = next(r for r in recs if r["job"] == "yaw-sweep")
    cells = [json.loads((out / f).read_text()) for f in sweep["files"] if f.endswith(".json")]
    assert [c["sweep"]["pose.yaw"] for c in cells] == [-60.0, 0.0, 60.0]
    assert [c["head_state"]["pose"]["yaw"] for c in cells] == [-60.0, 0.0, 60.0]
    assert {c["seed"] for c in cells} == {3} and [c["label"] for c in cells] == ["yaw -60", "yaw 0", "yaw 60"]
    assert "yaw-sweep/contact_sheet.png" in sweep["files"]
    sheet = _pixels(out / "yaw-sweep" / "contact_sheet.png")
    assert sheet.shape[1] > 3 * 64 and sheet.shape[0] > 64
    turned = json.loads((out / "turned" / "000.json").read_text())
    # the job's controls on top of the photo's fitted ones (the dense fit sets sliders such as brow_raise)
    assert turned["head_state"]["pose"]["yaw"] == 25.0 and turned["head_state"]["expression_controls"]["smile"] == 0.5
    assert turned["fingerprint"] == next(r for r in recs if r["job"] == "turned")["fingerprint"]
    multi = next(r for r in recs if r["line"] == 4)
    assert multi["job"].startswith("j") and len([f for f in multi["files"] if f.endswith(".png")]) == 2
    seeds = [json.loads((out / f).read_text())["seed"] for f in multi["files"] if f.endswith(".json")]
    assert seeds[1] == seeds[0] + 1 and multi["seed"] == seeds[0]


def test_second_run_does_nothing_new(six, tiny_weights, tmp_path):
    jobs, out, _ = six
    before = (out / "manifest.jsonl").read_bytes()
    stamps = {f: (out / f).stat().st_mtime_ns for f in _outputs(out)}
    assert _main(*_batch_args(jobs, out, tiny_weights, "--stats-json", tmp_path / "s.json")) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["jobs_already_done"] == 6 and stats["images"] == 0 and stats["pipeline_calls"] == 0
    assert stats["timings"]["load"] == 0.0  # the models are not even loaded
    assert (out / "manifest.jsonl").read_bytes() == before
    assert {f: (out / f).stat().st_mtime_ns for f in _outputs(out)} == stamps


def test_a_batch_of_one_equals_generate(tiny_weights, tmp_path):
    """One image per call: the batch's image is generate's image for the same head and seed, bit for bit
    (in batches of several it may differ by a rounding step: CPU kernels round by batch shape)."""
    job = {"id": "g", "reference": HOPPER, "prompt": "a photo", "seed": 2, "head": {"yaw": 20, "smile": 0.5}, **FAST}
    jobs = _write_jobs(tmp_path / "one.jsonl", [job])
    assert _main(*_batch_args(jobs, tmp_path / "out", tiny_weights, "--batch-size", "1")) == 0
    assert _main("generate", "--weights", tiny_weights, "--reference", HOPPER, "--prompt", "a photo", "--yaw", "20",
                 "-e", "smile=0.5", "--steps", "2", "--size", "64", "--seed", "2", "--device", "cpu",
                 "--out", tmp_path / "g.png") == 0
    np.testing.assert_array_equal(_pixels(tmp_path / "out" / "g" / "000.png"), _pixels(tmp_path / "g.png"))


# ---------------------------------------------------------------------------- crash and resume
def test_killed_run_resumes_every_job_done_once(tiny_weights, tmp_path):
    jobs = _write_jobs(tmp_path / "jobs.jsonl", [
        {"id": f"k{i:02d}", "reference": ASTRONAUT, "prompt": "a portrait", "seed": i, "head": {"yaw": 5 * i}, **FAST}
        for i in range(14)])
    out = tmp_path / "out"
    args = _batch_args(jobs, out, tiny_weights, "--batch-size", "1")

    def start_and_stop(sig, min_done):
        proc = subprocess.Popen([sys.executable, "-m", "caphuman", *map(str, args)], env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if sum(r["status"] == "done" for r in _records(out)) >= min_done:
                break
            time.sleep(0.02)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
        return proc.returncode, err

    rc, _ = start_and_stop(signal.SIGKILL, 1)
    assert rc == -signal.SIGKILL
    first = {r["job"] for r in _records(out)}
    assert 1 <= len(first) < 14, "the run was not stopped half-way"
    kept = {j: (out / j / "000.png").stat().st_mtime_ns for j in first}

    rc, err = start_and_stop(signal.SIGINT, len(first) + 1)  # Ctrl+C: a clean stop
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert len({r["job"] for r in _records(out)}) < 14, "the second run was not stopped half-way"

    assert _main(*args) == 0
    recs = _records(out)
    done = [r["job"] for r in recs if r["status"] == "done"]
    assert sorted(done) == [f"k{i:02d}" for i in range(14)]  # every job done, each exactly once
    assert all(r["status"] == "done" for r in recs)
    assert not list(out.rglob("*.part")) and not list(out.glob("manifest.rank*"))
    for i in range(14):
        assert _pixels(out / f"k{i:02d}" / "000.png").shape == (64, 64, 3)  # complete files at the final paths
        assert json.loads((out / f"k{i:02d}" / "000.json").read_text())["seed"] == i
    assert {j: (out / j / "000.png").stat().st_mtime_ns for j in first} == kept  # finished jobs not redone


# ---------------------------------------------------------------------------- several processes
def test_two_gloo_processes_make_the_same_images(six, tiny_weights, tmp_path):
    jobs, single, _ = six
    out = tmp_path / "out"
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-m", "caphuman", *map(str, _batch_args(jobs, out, tiny_weights,
                                                                                         "--batch-size", "4"))],
                              env=_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in (0, 1)]
    results = [p.communicate(timeout=300) for p in procs]
    for p, (so, se) in zip(procs, results):
        assert p.returncode == 0, se[-2000:]
    assert "6/6 jobs done" in results[0][0]
    recs = _records(out)
    assert sorted(r["job"] for r in recs) == sorted(r["job"] for r in _records(single))  # each job once
    assert {r["rank"] for r in recs} == {0, 1}  # both workers had work
    assert not list(out.glob("manifest.rank*"))  # the parts were merged
    assert _outputs(out) == _outputs(single)
    for f in _outputs(single):
        if f.endswith(".png"):
            np.testing.assert_array_equal(_pixels(out / f), _pixels(single / f), err_msg=f)


def test_plan_is_whole_jobs_and_independent_of_workers():
    from caphuman.batch.distributed import assign
    from caphuman.batch.jobs import job_from_dict
    from caphuman.batch.runner import plan_packs

    jobs = [job_from_dict({"id": f"j{i}", "reference": ASTRONAUT, "prompt": "p", "num_images": n, **FAST}, i + 1)
            for i, n in enumerate([1, 3, 3, 8, 1, 2, 5, 1, 1])]
    packs = plan_packs(jobs, 4)
    assert [len(b) for p in packs for b in p][:3] == [4, 4, 4]  # batches are filled across jobs
    owner = {}
    for k, pack in enumerate(packs):
        for batch in pack:
            assert len(batch) <= 4
            for job, _ in batch:
                assert owner.setdefault(job.id, k) == k  # a job never spans two packs
    assert sorted(owner) == sorted(j.id for j in jobs)
    for world in (1, 2, 3):
        ranks = assign([sum(len(b) for b in p) for p in packs], world)
        assert ranks == assign([sum(len(b) for b in p) for p in packs], world) and set(ranks) <= set(range(world))
    assert assign([1] * 6, 2) == [0, 1, 0, 1, 0, 1]


# ---------------------------------------------------------------------------- validation
def test_invalid_lines_are_reported_by_line_number(tiny_weights, tmp_path, capsys):
    ok = {"reference": ASTRONAUT, "prompt": "a portrait", **FAST}
    lines = [
        ok,                                                            # 1 valid
        '{"reference": "x.jpg", "prompt": ',                           # 2 not JSON
        {**ok, "promt": "typo"},                                       # 3 unknown field
        {"reference": ASTRONAUT},                                      # 4 no prompt
        {**ok, "head": {"pose.yaw": 200}},                             # 5 out of range
        {**ok, "sweep": "pose.wobble=0:1:3"},                          # 6 unknown control
        {**ok, "reference": "missing.jpg"},                            # 7 no such photo
        "",                                                            # 8 blank: skipped
        {**ok, "steps": 0},                                            # 9 studio rule: steps 1..150
        {**ok, "resolution": 100},                                     # 10 multiple of 64
        {**ok, "sweep": "yaw=-60:60:3", "num_images": 2},              # 11 sweep + num_images
        ok,                                                            # 12 same as line 1
    ]
    jobs = _write_jobs(tmp_path / "jobs.jsonl", lines)
    out = tmp_path / "out"
    assert _main(*_batch_args(jobs, out, tiny_weights)) == 2
    err = capsys.readouterr().err
    expect = {2: "not valid JSON", 3: "unknown field 'promt'", 4: '"prompt" is required', 5: "yaw must be between",
              6: "unknown head control 'pose.wobble'", 7: "no such file missing.jpg", 9: "steps must be between",
              10: "multiple of 64", 11: "num_images must be 1 with a sweep", 12: "the same job as line 1"}
    for n, needle in expect.items():
        assert any(line.startswith(f"{jobs}:{n}:") and needle in line for line in err.splitlines()), (n, err)
    assert not any(line.startswith(f"{jobs}:{n}:") for n in (1, 8) for line in err.splitlines())
    assert "10 invalid lines; nothing was run" in err and not out.exists()

    assert _main(*_batch_args(jobs, out, tiny_weights, "--skip-invalid")) == 0  # the valid line runs
    assert [r["line"] for r in _records(out)] == [1]


def test_sweep_specs():
    from caphuman.batch.sweep import SweepAxis, SweepSpec, control_path, label, slug
    from caphuman.errors import InputError

    spec = SweepSpec.from_obj(["yaw=-60:60:3", {"control": "lighting.azimuth", "values": [-90, 90]}])
    assert (spec.rows, spec.columns, spec.size) == (2, 3, 6)
    cells = spec.cells()
    assert cells[0] == {"pose.yaw": -60.0, "lighting.azimuth": -90.0} and cells[3]["lighting.azimuth"] == 90.0
    assert [c["pose.yaw"] for c in cells[:3]] == [-60.0, 0.0, 60.0]  # the first axis runs across
    assert label(cells[5]) == "yaw 60 · azimuth 90" and slug(cells[0]) == "yaw-60_azimuth-90"
    assert SweepAxis.parse("smile=0:1:5").values == (0.0, 0.25, 0.5, 0.75, 1.0)
    assert SweepAxis.parse("expression_controls.smile=0,1").control == "expression_controls.smile"
    assert control_path("light.azimuth") == "lighting.azimuth" and control_path("e3") == "expression.3"
    for bad, needle in (("yaw=-100:60:3", "between -90 and 90"), ("yaw=0:1:0", "steps"), ("yaw", "expected"),
                        ("yaw=0:nan:3", "finite"), ("yaw=1,1", "repeat"), ("yaw=0:10:1", "one step")):
        with pytest.raises(InputError, match=needle):
            SweepAxis.parse(bad)
    with pytest.raises(InputError, match="given twice"):
        SweepSpec.from_obj(["yaw=0,1", "pose.yaw=2,3"])
    with pytest.raises(InputError, match="at most"):
        SweepSpec.from_obj(["yaw=-60:60:30", "pitch=-30:30:30"])


def test_manifest_survives_a_cut_line_and_merges_once(tmp_path):
    from caphuman.batch.manifest import Manifest, atomic_write

    main = Manifest(tmp_path)
    main.append([{"job": "a", "status": "done", "time": 1.0}])
    with open(tmp_path / "manifest.jsonl", "ab") as fh:
        fh.write(b'{"job": "b", "sta')  # a crash in the middle of a line
    part = Manifest(tmp_path, rank=1, world=2)
    part.append([{"job": "c", "status": "done", "time": 2.0}])
    assert sorted(Manifest(tmp_path).latest()) == ["a", "c"]
    assert Manifest(tmp_path).merge_parts() == 1 and Manifest(tmp_path).merge_parts() == 0
    main.append([{"job": "b", "status": "failed", "time": 3.0}])
    assert Manifest(tmp_path).latest()["b"]["status"] == "failed" and not list(tmp_path.glob("manifest.rank*"))
    atomic_write(tmp_path / "x.bin", b"data")
    assert (tmp_path / "x.bin").read_bytes() == b"data" and not list(tmp_path.glob(".*.part"))


def test_sweep_command(tiny_weights, tmp_path, capsys):
    """The sweep command, through the overlapped loop (next batch prepared, last one written, in threads)."""
    out = tmp_path / "sweep"
    assert _main("sweep", "--weights", tiny_weights, "--reference", ASTRONAUT, "--prompt", "a portrait",
                 "--sweep", "yaw=-30:30:2", "--sweep", "smile=0,1", "--roll", "5", "--steps", "1", "--size", "64",
                 "--seed", "9", "--device", "cpu", "--no-progress", "--batch-size", "2", "--overlap", "--out", out) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith(str(out / "contact_sheet.png")) and "(2 x 2)" in printed[-1]
    pngs = sorted(p.name for p in out.glob("0*.png"))
    assert pngs == ["000_yaw-30_smile0.png", "001_yaw+30_smile0.png", "002_yaw-30_smile+1.png", "003_yaw+30_smile+1.png"]
    side = json.loads((out / "003_yaw+30_smile+1.json").read_text())
    assert side["seed"] == 9 and side["head_state"]["pose"]["roll"] == 5.0
    assert side["head_state"]["expression_controls"]["smile"] == 1.0
    assert (out / "contact_sheet.png").is_file() and len(_records(out)) == 1


def test_pipeline_per_image_inputs_match_one_image_calls(tmp_path):
    """Per-image prompts / hints / identities / generators: each image equals its one-image call (up to
    float rounding: CPU kernels round by batch shape)."""
    from caphuman.diffusion.pipeline import CapHumanPipeline
    from caphuman.testing.tiny_model import build_components

    pipe = CapHumanPipeline(**build_components(seed=0))
    pipe.set_progress_bar_config(disable=True)
    g = torch.Generator().manual_seed(0)
    hints = torch.randn(3, 9, 64, 64, generator=g)
    ids = torch.nn.functional.normalize(torch.randn(3, 512, generator=g), dim=-1)
    tokens = torch.randn(3, 17, 48, generator=g)
    prompts, negatives = ["a", "b", "a"], ["", "x", ""]

    def call(idx):
        return pipe([prompts[i] for i in idx], hints[idx], ids[idx], image_embeds=tokens[idx],
                    negative_prompt=[negatives[i] for i in idx], num_images=len(idx), num_inference_steps=2,
                    generator=[torch.Generator().manual_seed(10 + i) for i in idx], output_type="latent").images

    batch = call([0, 1, 2])
    # batch of 3 vs 1: the same float32 arithmetic in another batch shape. Budget as for the batched-CFG test
    # (tolerances.sampling_growth: 2 steps at the default g = 7, 209 units of max|ref|, ~1.7e-4 here);
    # measured 14-35 across CPU emulations. Mixing up two images' prompts, hints or seeds moves them by O(1).
    for i in range(3):
        assert_close_scaled(batch[i:i + 1], call([i]), sampling_growth(2, 7.0), what=f"image {i}")
    assert (batch[0] - batch[2]).abs().max() > 1e-3  # different hint/identity/seed: a different image
    with pytest.raises(ValueError, match="num_images"):
        pipe(["a", "b"], hints[0], ids[:1], image_embeds=tokens[:1], num_images=3, num_inference_steps=1)
