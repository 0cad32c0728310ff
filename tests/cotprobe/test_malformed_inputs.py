"""Property: every stage verb, fed any malformed rows, fails with one ``error:`` line or writes every row.

Hypothesis mutates valid stage files (a field dropped, retyped or set outside its domain, an id
repeated, garbage or truncated lines, an empty file) and runs the verb in-process: an uncaught
exception (a traceback) fails the test, and so does exit 0 with fewer output rows than input rows.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cotprobe import cli
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.records import load_samples
from cotprobe.variants import perturb

DUMMY = {"backend": "dummy", "path": "", "settings": {}, "version": 1,
         "generation": {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 2}}  # fmt: skip
JSON_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=8),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=2), st.text(max_size=4), max_size=3),
)  # fmt: skip


def _mutations(field_names):
    field = st.sampled_from(field_names)
    return st.one_of(
        st.tuples(st.just("drop"), field, st.none()),
        st.tuples(st.just("set"), field, JSON_VALUES),
        st.tuples(st.just("duplicate_id"), st.none(), st.none()),
        st.tuples(st.just("garbage"), st.none(), st.binary(min_size=1, max_size=20)),
        st.tuples(st.just("truncate"), st.none(), st.integers(1, 40)),
        st.tuples(st.just("empty"), st.none(), st.none()),
        st.tuples(st.just("not_object"), st.none(), JSON_VALUES),
    )


def _apply(path, mutation, row_index):
    kind, field, value = mutation
    lines = path.read_bytes().splitlines()
    i = row_index % len(lines)
    row = json.loads(lines[i])
    if kind == "drop":
        row.pop(field, None)
    elif kind == "set":
        row[field] = value
    elif kind == "duplicate_id":
        row["id"] = json.loads(lines[(i + 1) % len(lines)])["id"]
    if kind in ("drop", "set", "duplicate_id"):
        lines[i] = json.dumps(row).encode()
    elif kind == "garbage":
        lines[i] = value
    elif kind == "truncate":
        lines[i] = lines[i][:value]
    elif kind == "not_object":
        lines[i] = json.dumps(value).encode()
    elif kind == "empty":
        lines = []
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _count(path):
    return len([x for x in path.read_bytes().splitlines() if x.strip()]) if path.exists() else 0


def _check(code, capsys, out, n_in):
    err = capsys.readouterr().err
    assert code in (0, 2)
    if code == 2:
        assert err.count("error: ") == 1, err
        assert not out.exists()
    else:
        assert _count(out) == n_in  # never a silent gap


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("valid")
    samples = Shapes(n=4, seed=0).prepare(root / "data")
    write_jsonl(root / "samples.jsonl", (s.to_dict() for s in samples))
    write_jsonl(
        root / "prompts.jsonl", (p.to_dict() for p in perturb(samples, "wrong_think", bench="shapes", seed=0))
    )
    assert cli.main(["generate", "--model", "m", "--spec", json.dumps(DUMMY), "--prompts", str(root / "prompts.jsonl"),
                     "--seed", "0", "--out", str(root / "gen.jsonl"), "--logits-out", str(root / "l.parquet")]) == 0  # fmt: skip
    for j in ("a", "b"):
        assert cli.main(["judge", "--judge", j, "--spec", '{"kind": "rule"}', "--prompts", str(root / "prompts.jsonl"),
                         "--generations", str(root / "gen.jsonl"), "--out", str(root / f"v{j}.jsonl")]) == 0  # fmt: skip
    assert cli.main(["parse", "--prompts", str(root / "prompts.jsonl"), "--generations", str(root / "gen.jsonl"),
                     "--out", str(root / "parsed.jsonl")]) == 0  # fmt: skip
    return root


def _fresh(files, tmp_path_factory):
    work = tmp_path_factory.mktemp("case")
    for name in ("samples.jsonl", "prompts.jsonl", "gen.jsonl", "va.jsonl", "vb.jsonl", "parsed.jsonl"):
        (work / name).write_bytes((files / name).read_bytes())
    return work


SAMPLE_FIELDS = ["id", "image", "question", "options", "answer", "category"]
PROMPT_FIELDS = [*SAMPLE_FIELDS, "user_text", "prefill", "seed", "target_letter"]
GEN_FIELDS = ["id", "text", "think", "answer_letter", "parse_status", "prefill"]
VERDICT_FIELDS = ["id", "quadrant", "answer_letter", "correct", "consistent"]
PARSED_FIELDS = ["id", "think", "answer_letter", "parse_status", "answer_rule"]
SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _case(files, tmp_path_factory, capsys, mutation, row, *, mutate, argv, rows_of):
    """Mutate one file of a fresh copy, run the verb ``argv(work, out)``, check the property."""
    capsys.readouterr()  # hypothesis reuses the fixture across examples
    work = _fresh(files, tmp_path_factory)
    _apply(work / mutate, mutation, row)
    out = work / "out.jsonl"
    _check(cli.main(argv(work, out)), capsys, out, _count(work / rows_of))


@SETTINGS
@given(mutation=_mutations(SAMPLE_FIELDS), row=st.integers(0, 3))
def test_perturb(files, tmp_path_factory, capsys, mutation, row):
    def argv(work, out):
        return ["perturb", "--samples", str(work / "samples.jsonl"), "--bench", "shapes",
                "--variant", "wrong_caption", "--seed", "0", "--out", str(out)]  # fmt: skip

    _case(
        files,
        tmp_path_factory,
        capsys,
        mutation,
        row,
        mutate="samples.jsonl",
        argv=argv,
        rows_of="samples.jsonl",
    )


@SETTINGS
@given(mutation=_mutations(PROMPT_FIELDS), row=st.integers(0, 3))
def test_generate(files, tmp_path_factory, capsys, mutation, row):
    def argv(work, out):
        return ["generate", "--model", "m", "--spec", json.dumps(DUMMY), "--prompts", str(work / "prompts.jsonl"),
                "--seed", "0", "--out", str(out), "--logits-out", str(work / "l.parquet")]  # fmt: skip

    _case(
        files,
        tmp_path_factory,
        capsys,
        mutation,
        row,
        mutate="prompts.jsonl",
        argv=argv,
        rows_of="prompts.jsonl",
    )


@SETTINGS
@given(mutation=_mutations(GEN_FIELDS), row=st.integers(0, 3))
def test_judge(files, tmp_path_factory, capsys, mutation, row):
    def argv(work, out):
        return ["judge", "--judge", "rule", "--spec", '{"kind": "rule"}', "--prompts", str(work / "prompts.jsonl"),
                "--generations", str(work / "gen.jsonl"), "--out", str(out)]  # fmt: skip

    _case(
        files, tmp_path_factory, capsys, mutation, row, mutate="gen.jsonl", argv=argv, rows_of="prompts.jsonl"
    )


@SETTINGS
@given(target=st.sampled_from(["prompts.jsonl", "gen.jsonl"]), mutation=_mutations(sorted({*PROMPT_FIELDS, *GEN_FIELDS})),
       row=st.integers(0, 3))  # fmt: skip
def test_parse(files, tmp_path_factory, capsys, target, mutation, row):
    def argv(work, out):
        return ["parse", "--prompts", str(work / "prompts.jsonl"), "--generations", str(work / "gen.jsonl"),
                "--out", str(out)]  # fmt: skip

    _case(files, tmp_path_factory, capsys, mutation, row, mutate=target, argv=argv, rows_of="prompts.jsonl")


@SETTINGS
@given(mutation=_mutations(VERDICT_FIELDS), row=st.integers(0, 3))
def test_ensemble(files, tmp_path_factory, capsys, mutation, row):
    spec = json.dumps({"kind": "ensemble", "args": {"judges": ["a", "b"], "rule": "majority"}})

    def argv(work, out):
        return ["ensemble", "--judge", "e", "--spec", spec, "--verdicts", str(work / "va.jsonl"),
                str(work / "vb.jsonl"), "--out", str(out)]  # fmt: skip

    _case(files, tmp_path_factory, capsys, mutation, row, mutate="vb.jsonl", argv=argv, rows_of="va.jsonl")


@pytest.fixture(scope="module")
def cells(files, tmp_path_factory):
    """A base cell beside the wrong_think cell of ``files``, so the aggregates have a reference."""
    root = tmp_path_factory.mktemp("base-cell")
    samples = load_samples(str(files / "samples.jsonl"))
    write_jsonl(
        root / "prompts.jsonl", (p.to_dict() for p in perturb(samples, "base", bench="shapes", seed=0))
    )
    assert cli.main(["generate", "--model", "m", "--spec", json.dumps(DUMMY), "--prompts", str(root / "prompts.jsonl"),
                     "--seed", "0", "--out", str(root / "gen.jsonl"), "--logits-out", str(root / "l.parquet")]) == 0  # fmt: skip
    assert cli.main(["judge", "--judge", "a", "--spec", '{"kind": "rule"}', "--prompts", str(root / "prompts.jsonl"),
                     "--generations", str(root / "gen.jsonl"), "--out", str(root / "va.jsonl")]) == 0  # fmt: skip
    assert cli.main(["parse", "--prompts", str(root / "prompts.jsonl"), "--generations", str(root / "gen.jsonl"),
                     "--out", str(root / "parsed.jsonl")]) == 0  # fmt: skip
    return root


def _entry(root, variant, names):
    return {"model": "m", "bench": "shapes", "variant": variant, "seed": 0, "judge": "a",
            "prompts": str(root / names[0]), "parsed": str(root / names[1]),
            "logits": str(root / "l.parquet"), "verdicts": str(root / names[2])}  # fmt: skip


@SETTINGS
@given(
    target=st.sampled_from(["prompts.jsonl", "parsed.jsonl", "va.jsonl"]),
    mutation=_mutations(sorted({*PROMPT_FIELDS, *PARSED_FIELDS, *VERDICT_FIELDS})),
    row=st.integers(0, 3),
)
def test_metrics(files, cells, tmp_path_factory, target, mutation, row):
    from cotprobe import metrics
    from cotprobe.io import InputError

    work = _fresh(files, tmp_path_factory)
    (work / "l.parquet").write_bytes((files / "l.parquet").read_bytes())
    _apply(work / target, mutation, row)
    entries = [_entry(cells, "base", ("prompts.jsonl", "parsed.jsonl", "va.jsonl")),
               _entry(work, "wrong_think", ("prompts.jsonl", "parsed.jsonl", "va.jsonl"))]  # fmt: skip
    try:
        tables = metrics.compute_metrics(entries, metrics.Analysis.from_config({"bootstrap": {"n": 100}}))
    except InputError as err:
        assert "wrong_think" in str(err) and "\n" not in str(err)  # names the cell, one line
    else:
        assert tables["cells"].filter(metrics.pl.col("variant") == "wrong_think")["n"].to_list() == [4]
