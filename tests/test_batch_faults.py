"""Batch job files and output folders against hostile input (issue 19): nesting, over-long integers,
Unicode line breaks, huge or endless files, reserved ids, an --out that is a file. Parsing only: no model."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from caphuman.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = str(ROOT / "assets" / "examples" / "astronaut.jpg")


def _parse(tmp_path: Path, *lines: str):
    from caphuman.batch.jobs import parse_jobs

    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return parse_jobs(path)


def _job(**kw) -> str:
    return json.dumps({"reference": ASTRONAUT, "prompt": "a portrait", "steps": 2, "resolution": 64, **kw})


def test_deep_nesting_and_long_integers_are_line_errors(tmp_path):
    deep_line = "[" * 100_000 + "]" * 100_000
    deep_head = '{"reference": "x", "prompt": "p", "head": ' + '{"a": ' * 50_000 + "1" + "}" * 50_000 + "}"
    seed = '{"reference": "%s", "prompt": "p", "seed": %s}' % (ASTRONAUT, "9" * 5000)
    parsed = _parse(tmp_path, deep_line, deep_head, seed, _job(id="fine"))
    assert [j.id for j in parsed.jobs] == ["fine"]
    by_line = {e.line: e.message for e in parsed.errors}
    assert "nested more than 64 levels deep" in by_line[1] and "nested more than 64 levels deep" in by_line[2]
    assert "more than 4300 digits" in by_line[3]
    # brackets inside strings do not count
    parsed = _parse(tmp_path, _job(prompt="a portrait " + "[{" * 100))
    assert not parsed.errors and parsed.jobs[0].prompt.endswith("[{" * 100)


def test_unicode_line_separators_stay_inside_a_prompt(tmp_path):
    prompt = "a portrait\u2028in a park\u2029at dusk\x85\x0b\x0c\x1c"
    line = json.dumps({"reference": ASTRONAUT, "prompt": prompt, "steps": 2, "resolution": 64}, ensure_ascii=False)
    assert "\u2028" in line  # the raw character is in the file, not an escape
    parsed = _parse(tmp_path, line, _job(id="second"))
    assert not parsed.errors
    from caphuman.validation import check_prompt

    assert parsed.jobs[0].prompt == check_prompt(prompt)  # the prompt's own rules, applied to the whole text
    assert "a portrait\u2028in a park\u2029at dusk" in parsed.jobs[0].prompt
    assert [j.line for j in parsed.jobs] == [1, 2]


def test_endless_and_huge_files_are_refused_quickly(tmp_path, monkeypatch):
    from caphuman.batch import jobs
    from caphuman.batch.jobs import parse_jobs

    with pytest.raises(InputError, match="larger than 64 MiB"):
        parse_jobs("/dev/zero")
    sparse = tmp_path / "big.jsonl"
    with open(sparse, "wb") as fh:
        fh.truncate(3 << 30)  # 3 GiB of holes: costs nothing on disk
    with pytest.raises(InputError, match="larger than 64 MiB"):
        parse_jobs(sparse)
    # a 3 GiB "photo" is refused by its size before a byte of it is read
    photo = tmp_path / "huge.jpg"
    with open(photo, "wb") as fh:
        fh.truncate(3 << 30)
    read = []
    real_open = open

    def spy(path, *a, **kw):
        if str(path) == str(photo):
            read.append(path)
        return real_open(path, *a, **kw)

    monkeypatch.setattr("builtins.open", spy)
    parsed = _parse(tmp_path, _job(reference=str(photo)))
    monkeypatch.undo()
    assert not parsed.jobs and "3,072 MiB; a reference photo may be at most 256 MiB" in parsed.errors[0].message
    assert not read
    assert jobs.MAX_PHOTO_BYTES < 3 << 30


@pytest.mark.parametrize("job_id", ["manifest.jsonl", "manifest.rank0.jsonl", "Manifest.JSONL", "manifest",
                                    "manifest.rank12.jsonl.part", "con", "NUL.txt", "com1", "lpt9.png", "aux"])
def test_ids_that_collide_with_the_runs_files_or_devices_are_refused(tmp_path, job_id):
    parsed = _parse(tmp_path, _job(id=job_id))
    assert not parsed.jobs and "is reserved" in parsed.errors[0].message


def test_ordinary_ids_near_the_reserved_ones_are_fine(tmp_path):
    parsed = _parse(tmp_path, *(_job(id=i, seed=n) for n, i in enumerate(["manifesto", "console", "com10", "nullish"])))
    assert not parsed.errors and [j.id for j in parsed.jobs] == ["manifesto", "console", "com10", "nullish"]


def test_out_naming_a_file_is_an_input_error(tmp_path):
    from caphuman.batch.runner import check_out_folder

    f = tmp_path / "results"
    f.write_text("not a folder")
    with pytest.raises(InputError, match="is an existing file, not a folder"):
        check_out_folder(f)
    with pytest.raises(InputError, match="cannot create the folder"):
        check_out_folder(f / "sub")
    assert check_out_folder(tmp_path / "new" / "run").is_dir()
    assert not (tmp_path / "later").exists() and check_out_folder(tmp_path / "later", create=False)
    assert f.read_text() == "not a folder"


def test_batch_cli_out_file_is_one_line(tmp_path, capsys):
    from caphuman.__main__ import main

    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text(_job(id="a") + "\n")
    out = tmp_path / "out.txt"
    out.write_text("x")
    code = main(["batch", str(jobs), "--out", str(out), "--weights", str(tmp_path / "none"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and "is an existing file, not a folder" in err and "unexpected" not in err
    assert os.path.getsize(out) == 1
