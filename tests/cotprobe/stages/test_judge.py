"""The judge stage: a resumed LLM judge does not re-ask, the backend is closed, ensembles, the cost dry run."""

import json
from pathlib import Path

import pytest
import yaml

from cotprobe import cli
from cotprobe.backends.base import make_generation
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.specs import PluginParams
from cotprobe.stages.judge import cache_key
from cotprobe.variants import perturb

ROOT = Path(__file__).resolve().parents[3]
SCHEMA = str(ROOT / "workflow/schemas/config.schema.yaml")


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture
def cell(tmp_path, monkeypatch):
    """Prompts and generations of a 5-sample cell; generation 3 has no closed think."""
    monkeypatch.chdir(tmp_path)
    prompts = perturb(Shapes(n=5, seed=3).prepare(tmp_path / "data"), "wrong_think", bench="shapes", seed=0)
    gens = []
    for i, p in enumerate(prompts):
        letter = list(p.options)[i % len(p.options)]
        completion = f" it is option {letter}.</think><answer>{letter}</answer>" if i != 3 else " hmm"
        gens.append(make_generation(p, model_id="tiny", completion=completion, prompt_tokens=1,
                                    completion_tokens=1, seconds=0.0, finish_reason="stop"))  # fmt: skip
    write_jsonl(tmp_path / "prompts.jsonl", (p.to_dict() for p in prompts))
    write_jsonl(tmp_path / "gens.jsonl", (g.to_dict() for g in gens))
    return tmp_path


def llm_spec(tiny_model_dir, **sampling):
    args = {"backend": "hf", "path": str(tiny_model_dir), "settings": {"device": "cpu"},
            "sampling": {"max_new_tokens": 6, "batch_size": 2, **sampling}}  # fmt: skip
    return {"kind": "llm", "args": args, "version": 1}


def judge(tmp, spec, out="verdicts.jsonl"):
    return cli.main(["judge", "--judge", "tiny-llm", "--spec", json.dumps(spec), "--prompts", str(tmp / "prompts.jsonl"),
                     "--generations", str(tmp / "gens.jsonl"), "--out", str(tmp / out)])  # fmt: skip


def test_judge_closes_the_backend_it_loaded_even_when_judging_fails(cell, monkeypatch, capsys):
    from cotprobe.backends.dummy import DummyBackend

    closed = []
    monkeypatch.setattr(DummyBackend, "close", lambda self: closed.append(self))
    spec = {"kind": "llm", "args": {"backend": "dummy", "path": "x"}, "version": 1}
    assert judge(cell, spec) == 2  # the dummy backend has no text path
    assert "cannot serve text-only chat" in capsys.readouterr().err
    assert len(closed) == 1


def test_llm_judge_resumes_without_reasking(cell, tiny_model_dir, caplog):
    spec = llm_spec(tiny_model_dir)
    assert judge(cell, spec) == 0
    full = rows(cell / "verdicts.jsonl")
    assert len(full) == 5 and not (cell / "verdicts.jsonl.part").exists()
    assert [v["judge_output"] is None for v in full] == [False, False, False, True, False]

    # A crash after the first chunk: the part file holds two answered samples (one marked so we can
    # see it is read back, not re-asked) and a torn line.
    key = cache_key(PluginParams.from_param(spec), str(cell / "prompts.jsonl"), str(cell / "gens.jsonl"))
    marked = {"id": full[0]["id"], "letter": full[0]["answer_letter"], "reason": "", "raw": "FROM-PART-FILE"}
    kept = {"id": full[1]["id"], "letter": None, "reason": "judge: x", "raw": full[1]["judge_output"]}
    (cell / "verdicts.jsonl").unlink()
    (cell / "verdicts.jsonl.part").write_text(
        "".join(json.dumps(r) + "\n" for r in ({"cache_key": key}, marked, kept)) + '{"id": "sh'
    )
    caplog.set_level("INFO", logger="cotprobe")
    assert judge(cell, spec) == 0
    assert "5 samples, 2 already judged (resumed), 3 to go" in caplog.text
    assert (
        f"judge {cell / 'verdicts.jsonl'}: 3/3 samples (100%)" in caplog.text
    )  # progress counts what is left
    resumed = rows(cell / "verdicts.jsonl")
    assert resumed[0]["judge_output"] == "FROM-PART-FILE" and resumed[0]["consistent"] is True
    assert resumed[1]["reason"] == "judge: x"
    assert resumed[2:] == full[2:]  # the rest asked again, greedy: the same replies
    assert not (cell / "verdicts.jsonl.part").exists()


def test_part_file_of_another_judge_config_is_discarded(cell, tiny_model_dir):
    spec = llm_spec(tiny_model_dir)
    other = llm_spec(tiny_model_dir, max_new_tokens=5)
    key = cache_key(PluginParams.from_param(other), str(cell / "prompts.jsonl"), str(cell / "gens.jsonl"))
    marked = {"id": "shapes-00000", "letter": "A", "reason": "", "raw": "FROM-PART-FILE"}
    (cell / "verdicts.jsonl.part").write_text(
        json.dumps({"cache_key": key}) + "\n" + json.dumps(marked) + "\n"
    )
    assert judge(cell, spec) == 0
    assert all(v["judge_output"] != "FROM-PART-FILE" for v in rows(cell / "verdicts.jsonl"))


def test_ensemble_and_agreement_verbs(cell):
    rule = {"kind": "rule", "args": {}, "version": 1}
    strict_rule = {"kind": "rule", "args": {"use_option_text": False}, "version": 1}
    assert judge(cell, rule, "a.jsonl") == 0 and judge(cell, strict_rule, "b.jsonl") == 0
    spec = {"kind": "ensemble", "args": {"judges": ["a", "b"], "rule": "strict"}, "version": 1}
    args = ["ensemble", "--judge", "e", "--spec", json.dumps(spec), "--verdicts", "a.jsonl", "b.jsonl"]
    assert cli.main([*args, "--out", "e.jsonl"]) == 0
    combined = rows(cell / "e.jsonl")
    assert [v["votes"] for v in combined] == [{"a": x["quadrant"], "b": y["quadrant"]}
                                              for x, y in zip(rows(cell / "a.jsonl"), rows(cell / "b.jsonl"))]  # fmt: skip
    assert cli.main([*args[:-1], "--out", "e.jsonl"]) == 2  # one file for two members


def test_judge_cost_counts_calls_and_tokens(tmp_path, monkeypatch, capsys):
    from cotprobe.judge_cost import CHARS_PER_TOKEN, TYPICAL_QUESTION_CHARS, cost_table
    from cotprobe.judges.llm import load_template

    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load((ROOT / "tests/workflow/config/config.yaml").read_text())
    config["judges"]["tiny-llm"]["args"]["settings"] = {"price_per_1k_input": 0.5, "price_per_1k_output": 2.0}
    config["judges"]["tiny-llm"]["args"]["backend"] = "openai"
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    [row] = cost_table("c.yaml", SCHEMA)  # the rule judge and the ensembles cost nothing
    # 9 variants x 3 models (tiny and the two saved GRPO steps of the test study), 8 samples each.
    n_cells, n, think = 27, 8, config["generation"]["max_new_tokens"] * CHARS_PER_TOKEN
    bare = len(load_template("consistency_v1").text.format(question="", options="", think="", answer=""))
    assert row["judge"] == "tiny-llm" and row["cells"] == n_cells and row["calls"] == n_cells * n
    assert row["basis"] == "upper bound" and row["cells_done"] == 0
    assert row["input_tokens"] == n_cells * n * (bare + think + TYPICAL_QUESTION_CHARS) // CHARS_PER_TOKEN
    assert row["max_output_tokens"] == n_cells * n * 12
    assert row["cost_usd"] == pytest.approx(
        (row["input_tokens"] * 0.5 + row["max_output_tokens"] * 2.0) / 1000
    )

    # With one cell generated, its calls are the samples with a think, and its tokens exact.
    prompts = perturb(
        Shapes(n=8, seed=0, image_size=112).prepare(tmp_path / "d"), "base", bench="shapes", seed=0
    )
    gens = [make_generation(p, model_id="tiny", completion="<think>so A.</think><answer>A</answer>" if i % 2 else "x",
                            prompt_tokens=1, completion_tokens=1, seconds=0.0, finish_reason="stop")
            for i, p in enumerate(prompts)]  # fmt: skip
    write_jsonl("results/prompts/shapes/base/seed0.jsonl", (p.to_dict() for p in prompts))
    write_jsonl("results/generations/tiny/shapes/base/seed0.jsonl", (g.to_dict() for g in gens))
    [row] = cost_table("c.yaml", SCHEMA)
    assert row["calls"] == (n_cells - 1) * n + 4 and row["basis"] == "generations + upper bound"

    assert cli.main(["judge-cost", "--configfile", "c.yaml", "--schema", SCHEMA]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["judge", "backend", "path", "cells", "cells_done", "calls",
                                           "input_tokens", "max_output_tokens", "cost_usd", "basis"]  # fmt: skip
    assert "tiny-llm" in out and "characters/4" in out


def test_judge_cost_says_when_it_cannot_count(tmp_path, monkeypatch):
    from cotprobe.judge_cost import cost_table

    monkeypatch.chdir(tmp_path)
    [row] = [r for r in cost_table(str(ROOT / "config/paper.yaml"), SCHEMA) if r["judge"] == "qwen3-32b"]
    assert row["calls"] is None and "pass --samples-per-bench" in row["basis"]
    rows_ = cost_table(str(ROOT / "config/paper.yaml"), SCHEMA, samples_per_bench=10)
    assert [r["judge"] for r in rows_] == ["qwen3-32b", "gpt-oss-120b", "llama31-70b"]
    assert all(r["calls"] == r["cells"] * 10 for r in rows_)
