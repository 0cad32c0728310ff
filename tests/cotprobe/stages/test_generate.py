"""The generate stage: resume of an interrupted generation, the letter scores, and clear bad-input errors."""

import json

import pytest

from cotprobe import cli
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.stages.generate import cache_key
from cotprobe.variants import perturb

SPEC = {
    "backend": "dummy",
    "path": "",
    "settings": {},
    "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2},
    "version": 1,
}


@pytest.fixture
def cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    samples = Shapes(n=6, seed=3).prepare(tmp_path / "data")
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, (p.to_dict() for p in perturb(samples, "wrong_think", bench="shapes", seed=0)))
    return tmp_path, prompts


def generate(tmp_path, prompts, spec=SPEC):
    return cli.main(
        ["generate", "--model", "m", "--spec", json.dumps(spec), "--prompts", str(prompts), "--seed", "0",
         "--out", str(tmp_path / "gen.jsonl"), "--logits-out", str(tmp_path / "logits.parquet")]
    )  # fmt: skip


def rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_generate_resumes_from_the_part_file(cell):
    tmp_path, prompts = cell
    assert generate(tmp_path, prompts) == 0
    full = rows(tmp_path / "gen.jsonl")
    assert len(full) == 6 and not (tmp_path / "gen.jsonl.part").exists()

    # Simulate a kill after the first batch: the part file holds a header and two finished records,
    # one of them marked so we can see it was kept rather than regenerated; then a torn line.
    key = cache_key(SPEC, str(prompts), 0)
    marked = dict(full[0], completion="FROM-PART-FILE")
    (tmp_path / "gen.jsonl").unlink()
    (tmp_path / "gen.jsonl.part").write_text(
        json.dumps({"cache_key": key})
        + "\n"
        + json.dumps(marked)
        + "\n"
        + json.dumps(full[1])
        + "\n"
        + '{"id": "sh'
    )
    assert generate(tmp_path, prompts) == 0
    resumed = rows(tmp_path / "gen.jsonl")
    assert resumed[0]["completion"] == "FROM-PART-FILE"
    assert [r["id"] for r in resumed] == [r["id"] for r in full]
    assert resumed[2:] == full[2:]  # the rest regenerated identically (same seeds per batch)


def test_part_file_of_other_settings_is_discarded(cell):
    tmp_path, prompts = cell
    assert generate(tmp_path, prompts) == 0
    full = rows(tmp_path / "gen.jsonl")
    (tmp_path / "gen.jsonl").unlink()
    # A finished, marked record of the first sample, under another cache key: it must not be kept.
    marked = dict(full[0], completion="FROM-PART-FILE")
    (tmp_path / "gen.jsonl.part").write_text(
        json.dumps({"cache_key": "other"}) + "\n" + json.dumps(marked) + "\n" + json.dumps(full[1]) + "\n"
    )
    assert generate(tmp_path, prompts) == 0
    assert all(r["completion"] != "FROM-PART-FILE" for r in rows(tmp_path / "gen.jsonl"))
    assert rows(tmp_path / "gen.jsonl") == full


def test_generate_closes_its_backend_on_every_path(cell, monkeypatch):
    from cotprobe.backends.base import BackendError
    from cotprobe.backends.dummy import DummyBackend

    tmp_path, prompts = cell
    closed = []
    monkeypatch.setattr(DummyBackend, "close", lambda self: closed.append(self))
    assert generate(tmp_path, prompts) == 0
    assert len(closed) == 1

    def fail(self, prompts, generations):
        raise BackendError("scoring failed")

    monkeypatch.setattr(DummyBackend, "letter_scores", fail)
    assert generate(tmp_path, prompts) == 2
    assert len(closed) == 2


def test_missing_field_names_file_row_and_field(cell, capsys):
    tmp_path, prompts = cell
    lines = prompts.read_text().splitlines()
    broken = json.loads(lines[2])
    del broken["user_text"]
    lines[2] = json.dumps(broken)
    prompts.write_text("\n".join(lines) + "\n")
    assert generate(tmp_path, prompts) == 2
    assert f"error: {prompts}:3: missing field 'user_text'" in capsys.readouterr().err


def test_unknown_plugin_and_missing_file_are_one_line_errors(cell, capsys):
    tmp_path, prompts = cell
    assert generate(tmp_path, prompts, {**SPEC, "backend": "hff"}) == 2
    assert "unknown backend 'hff'. Did you mean 'hf'?" in capsys.readouterr().err
    assert generate(tmp_path, tmp_path / "nope.jsonl") == 2
    assert "nope.jsonl: file not found" in capsys.readouterr().err


class Failing(Exception):
    pass


def test_failed_attempts_before_the_first_batch_leave_one_header(cell, monkeypatch):
    """Two attempts that fail before any batch, then one that works: no poisoned part file."""
    from cotprobe.backends.dummy import DummyBackend

    tmp_path, prompts = cell
    real = DummyBackend.generate

    def boom(self, *args, **kwargs):
        raise Failing("server went away")

    monkeypatch.setattr(DummyBackend, "generate", boom)
    for _ in range(2):
        with pytest.raises(Failing):
            generate(tmp_path, prompts)
    part = (tmp_path / "gen.jsonl.part").read_text().splitlines()
    assert len(part) == 1 and json.loads(part[0])["cache_key"]
    monkeypatch.setattr(DummyBackend, "generate", real)
    assert generate(tmp_path, prompts) == 0
    assert len(rows(tmp_path / "gen.jsonl")) == 6 and not (tmp_path / "gen.jsonl.part").exists()


@pytest.mark.parametrize(
    "tail",
    [
        "",  # header only
        '{"cache_key": "KEY"}\n',  # a header repeated by an older writer
        '{"id": "sh',  # torn record
        "\x00\xff garbage\n",
        '{"no_id": 1}\n',
    ],
)
def test_header_only_repeated_or_torn_part_files_resume(cell, tail):
    tmp_path, prompts = cell
    assert generate(tmp_path, prompts) == 0
    full = rows(tmp_path / "gen.jsonl")
    (tmp_path / "gen.jsonl").unlink()
    key = cache_key(SPEC, str(prompts), 0)
    header = json.dumps({"cache_key": key}) + "\n"
    kept = "".join(json.dumps(r) + "\n" for r in full[:2])  # one finished batch
    (tmp_path / "gen.jsonl.part").write_text(header + kept + tail.replace("KEY", key))
    assert generate(tmp_path, prompts) == 0
    assert rows(tmp_path / "gen.jsonl") == full


def test_a_torn_header_starts_over(cell):
    tmp_path, prompts = cell
    (tmp_path / "gen.jsonl.part").write_text('{"cache_k')
    assert generate(tmp_path, prompts) == 0
    assert len(rows(tmp_path / "gen.jsonl")) == 6


def _rewrite_row(path, index, **changes):
    lines = path.read_text().splitlines()
    row = json.loads(lines[index])
    row.update(changes)
    lines[index] = json.dumps(row)
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"id": "shapes-00000"}, ":3: field 'id': duplicate id 'shapes-00000' (first on line 1)"),
        ({"answer": "Q"}, ":3: field 'answer': 'Q' is not one of the options' letters (A, B, C, D)"),
        (
            {"options": ["red", "blue"]},
            ":3: field 'options': expected an object of letter -> option text, got list",
        ),
        (
            {"options": {"A": "red", "b": "blue"}},
            ":3: field 'options': option key 'b' is not a capital letter",
        ),
        ({"options": {"A": "red", "B": 3}}, ":3: field 'options': option B: expected a string, got int"),
        ({"user_text": None}, ":3: field 'user_text': expected a string, got NoneType"),
        ({"seed": "0"}, ":3: field 'seed': expected an integer, got str"),
        ({"id": ""}, ":3: field 'id': expected a non-empty string"),
    ],
)
def test_bad_prompt_rows_are_one_error_line(cell, capsys, changes, message):
    tmp_path, prompts = cell
    _rewrite_row(prompts, 2, **changes)
    assert generate(tmp_path, prompts) == 2
    err = capsys.readouterr().err
    assert f"error: {prompts}{message}" in err and "Traceback" not in err


def test_results_get_the_mode_of_a_plain_write(cell):
    import os
    import stat

    tmp_path, prompts = cell
    old = os.umask(0o022)
    try:
        assert generate(tmp_path, prompts) == 0
    finally:
        os.umask(old)
    for name in ("gen.jsonl", "logits.parquet"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o644


def test_generate_records_the_letter_set_with_the_logits(tmp_path, monkeypatch):
    import polars as pl

    from cotprobe.records import Sample

    monkeypatch.chdir(tmp_path)
    two = [Sample(f"s{i}", "x.png", "Which is closer?", {"A": "dog", "B": "bench"}, "AB"[i % 2], "closer_camera")
           for i in range(4)]  # fmt: skip
    prompts = tmp_path / "prompts.jsonl"
    write_jsonl(prompts, (p.to_dict() for p in perturb(two, "abstain", bench="cvbench", seed=0)))
    out = {}
    for letters in ("options", "fixed"):
        spec = {**SPEC, "generation": {**SPEC["generation"], "letters": letters}}
        (tmp_path / letters).mkdir()
        assert generate(tmp_path / letters, prompts, spec) == 0
        out[letters] = (
            rows(tmp_path / letters / "gen.jsonl"),
            pl.read_parquet(tmp_path / letters / "logits.parquet"),
        )
    assert out["options"][0] == out["fixed"][0]  # the letter set changes the scores, never the generations
    assert out["options"][1]["letters"].to_list() == [["A", "B", "C"]] * 4  # C: the abstain option
    assert out["fixed"][1]["letters"].to_list() == [["A", "B", "C", "D"]] * 4
    assert out["options"][1]["letter_set"].to_list() == ["options"] * 4
    assert out["fixed"][1]["letter_set"].to_list() == ["fixed"] * 4
