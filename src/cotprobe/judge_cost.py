"""The bill before spending: calls and tokens each LLM judge of a study would send (a dry run).

``python -m cotprobe judge-cost --configfile config/paper.yaml`` reads the config (no Snakemake,
no model, no request) and, per LLM judge, counts over every (model, bench, variant, seed) cell:

* **calls**: one per sample with a non-empty think. From the cell's generation file when it
  exists; otherwise every sample, counted from the prompt file, else the benchmark's samples
  file, else its ``n``/``limit`` arg, else ``--samples-per-bench``; else unknown.
* **input tokens**: the rendered judge prompt's characters / 4. Exact text when the generation
  file exists (``basis = generations``); otherwise an upper bound (``basis = upper bound``): the
  template + the question and options (from the prompt file, else ~200 characters) + a think
  as long as the generating model's ``max_new_tokens`` allows.
* **output tokens**: an upper bound, the judge's ``max_new_tokens`` per call.
* **cost**: when the judge's settings give ``price_per_1k_input`` and ``price_per_1k_output``.

Cells whose verdict file already exists are counted in ``cells_done`` (they may still rerun if
the judge's spec changed). Paths are relative to the current directory (run it where you run
Snakemake).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from cotprobe.workflow import GENERATIONS, PROMPTS, SAMPLES, VERDICTS, Grid

CHARS_PER_TOKEN = 4
TYPICAL_QUESTION_CHARS = 200
COLUMNS = (
    "judge",
    "backend",
    "path",
    "cells",
    "cells_done",
    "calls",
    "input_tokens",
    "max_output_tokens",
    "cost_usd",
    "basis",
)


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _count_lines(path: Path) -> int:
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


def cost_table(configfile: str, schema: str, samples_per_bench: int | None = None) -> list[dict[str, Any]]:
    """One row per LLM judge (columns ``COLUMNS``); ``calls`` etc. are None when unknown."""
    from cotprobe.judges.llm import LLMJudge, load_template, render
    from cotprobe.records import Generation, Prompt

    grid = Grid.from_config(yaml.safe_load(Path(configfile).read_text()), schema)
    rows = []
    for judge_id in grid.base_judges:
        spec = grid.judges[judge_id]
        if spec["kind"] != "llm":
            continue
        judge = LLMJudge(**spec["args"])
        template = load_template(judge.args["prompt"])
        bare = len(template.text.format(question="", options="", think="", answer=""))
        calls = chars = 0
        unknown = False
        bases = set()
        done = 0
        cells = list(grid.cells())
        for model, bench, variant, seed in cells:
            cell = {"model": model, "bench": bench, "variant": variant, "seed": seed}
            done += Path(VERDICTS.format(judge=judge_id, **cell)).exists()
            prompts_path, gens_path = Path(PROMPTS.format(**cell)), Path(GENERATIONS.format(**cell))
            if gens_path.exists() and prompts_path.exists():
                prompts = {r["id"]: _record(Prompt, r) for r in _jsonl(prompts_path)}
                for g in (_record(Generation, r) for r in _jsonl(gens_path)):
                    if g.think and g.think.strip() and g.id in prompts:
                        calls += 1
                        chars += len(render(template, prompts[g.id], g))
                bases.add("generations")
                continue
            think_chars = grid.models[model].generation["max_new_tokens"] * CHARS_PER_TOKEN
            if prompts_path.exists():
                prompts = _jsonl(prompts_path)
                n = len(prompts)
                question_chars = sum(_question_chars(p) for p in prompts)
            else:
                n = _bench_samples(grid, bench, samples_per_bench)
                if n is None:
                    unknown = True
                    continue
                question_chars = n * TYPICAL_QUESTION_CHARS
            calls += n
            chars += n * (bare + think_chars) + question_chars
            bases.add("upper bound")
        input_tokens = None if unknown else chars // CHARS_PER_TOKEN
        output_tokens = None if unknown else calls * judge.sampling["max_new_tokens"]
        price_in = judge.args["settings"].get("price_per_1k_input")
        price_out = judge.args["settings"].get("price_per_1k_output")
        cost = None
        if not unknown and price_in is not None and price_out is not None:
            cost = (input_tokens * float(price_in) + output_tokens * float(price_out)) / 1000
        rows.append(
            {
                "judge": judge_id,
                "backend": judge.args["backend"],
                "path": judge.args["path"],
                "cells": len(cells),
                "cells_done": done,
                "calls": None if unknown else calls,
                "input_tokens": input_tokens,
                "max_output_tokens": output_tokens,
                "cost_usd": cost,
                "basis": "unknown sample count (pass --samples-per-bench)"
                if unknown
                else " + ".join(sorted(bases)),
            }
        )
    return rows


def _record(cls, row: dict[str, Any]):
    fields = set(cls.__dataclass_fields__)
    return cls(**{k: v for k, v in row.items() if k in fields})


def _question_chars(prompt: dict[str, Any]) -> int:
    options = prompt.get("options", {})
    return len(prompt.get("question", "")) + sum(len(k) + len(v) + 3 for k, v in options.items())


def _bench_samples(grid: Grid, bench: str, override: int | None) -> int | None:
    samples = Path(SAMPLES.format(bench=bench))
    if samples.exists():
        return _count_lines(samples)
    args = grid.benchmarks[bench]["args"]
    for key in ("n", "limit"):
        if isinstance(args.get(key), int):
            return int(args[key])
    return override


def format_table(rows: Iterable[dict[str, Any]]) -> str:
    """The rows as an aligned text table (``-`` for unknown or not priced), with a note."""
    rows = list(rows)
    if not rows:
        return "no LLM judge in this config: nothing to pay for"

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.2f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    table = [list(COLUMNS)] + [[cell(r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table]
    lines.append(
        f"tokens ~ characters/{CHARS_PER_TOKEN}; output tokens are the judge's max_new_tokens per call "
        "(an upper bound); 'upper bound' cells assume a think of the model's max_new_tokens."
    )
    return "\n".join(lines)
