"""Time ``compute_metrics`` (and the agreement table) on a synthetic grid shaped like the paper's.

22 models x 8 benchmarks x 9 variants x 3 seeds x 1,000 items, 2 judges, 2,000 resamples: the
stage files are written once under ``--root`` (about 4 GB; reused when present), then the
aggregate step is timed as the ``compute_metrics`` rule runs it (reading every file included).
Target: <= 60 s on 2 cores.

    PYTHONPATH=src python perf/metrics_speed.py [--root /tmp/cotprobe-perf] [--models 22]
"""

from __future__ import annotations

import argparse
import os
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import polars as pl

from cotprobe import agreement, metrics
from cotprobe.threads import available_cpus
from cotprobe.workflow import LOGITS, PARSED, PROMPTS, VERDICTS, cell_entries

VARIANTS = [
    "base", "stop_think", "wrong_think", "wrong_think_but", "wrong_caption",
    "wrong_caption_disclaimer", "correct_caption", "correct_think", "abstain",
]  # fmt: skip
JUDGES = ["qwen3", "gpt-oss"]
LETTERS = np.array(list("ABCD"))
THINK = "The image shows the red cube to the left of the blue sphere, so the answer should be A. " * 3


def axes(models: int, benches: int, items: int, seeds: int) -> dict:
    return {
        "models": [f"model{m:02d}" for m in range(models)],
        "benchmarks": [f"bench{b}" for b in range(benches)],
        "variants": VARIANTS,
        "seeds": list(range(seeds)),
        "judges": JUDGES,
        "items": items,
    }


def marker(ax: dict) -> str:
    return repr(ax) + " layout=parsed"  # files metrics reads (a new layout rewrites the grid)


def write_grid(root: Path, ax: dict) -> None:
    """Stage files with the records' fields (``cotprobe.records``); correctness follows P_base."""
    n = ax["items"]
    ids = [f"item-{i:05d}" for i in range(n)]
    answers = LETTERS[np.arange(n) % 4]

    def prompts(bench: str, variant: str, seed: int) -> None:
        path = root / PROMPTS.format(bench=bench, variant=variant, seed=seed)
        path.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"id": ids, "bench": bench, "variant": variant, "seed": seed, "answer": answers,
                      "question": "Where is the cube?", "user_text": "Where is the cube? A. left B. right"
                      }).write_ndjson(path)  # fmt: skip

    def cell(model: str, bench: str, variant: str, seed: int) -> None:
        key = {"model": model, "bench": bench, "variant": variant, "seed": seed}
        rng = np.random.default_rng(zlib.crc32(f"{model}/{bench}/{variant}/{seed}".encode()))
        skill = np.random.default_rng(zlib.crc32(f"{model}/{bench}".encode())).random(n)
        p_correct = np.clip(skill + 0.1 * rng.standard_normal(n), 0.001, 0.999)
        drop = 0.0 if variant == "base" else 0.2
        correct = rng.random(n) < np.clip(p_correct - drop, 0, 1)
        wrong = LETTERS[(np.arange(n) + 1) % 4]
        chosen = np.where(correct, answers, wrong)
        missing = rng.random(n) < 0.03
        letter = pl.Series([None if m else str(x) for x, m in zip(chosen, missing)], dtype=pl.String)
        status = np.where(missing, "no_answer", "ok")
        gen = root / PARSED.format(**key)  # what metrics reads of a generation: its parse
        gen.parent.mkdir(parents=True, exist_ok=True)
        pl.DataFrame({"id": ids, "think": THINK, "answer_text": letter, "answer_letter": letter,
                      "parse_status": status, "answer_rule": np.where(missing, "no_answer", "letter"),
                      "parse_reason": "", "parser_version": 2}).write_ndjson(gen)  # fmt: skip
        rest = (1 - p_correct) / 3
        logits = root / LOGITS.format(**key)
        logits.parent.mkdir(parents=True, exist_ok=True)
        entropy = -(p_correct * np.log(p_correct) + 3 * rest * np.log(rest))
        pl.DataFrame({"id": ids, "entropy": entropy, "p_correct": p_correct, "p_target": None,
                      "argmax_letter": np.where(p_correct > rest, answers, wrong),
                      "answer_position": "generated"}).write_parquet(logits)  # fmt: skip
        for judge in JUDGES:
            consistent = rng.random(n) < 0.85
            quadrant = np.where(
                missing,
                "unparseable",
                np.where(consistent, "consistent_", "inconsistent_")
                + np.where(correct, "correct", "incorrect"),
            )
            path = root / VERDICTS.format(judge=judge, **key)
            path.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"id": ids, "judge": judge, "answer_letter": letter, "consistent": consistent,
                          "quadrant": quadrant, "reason": ""}).write_ndjson(path)  # fmt: skip

    with ThreadPoolExecutor(2) as pool:
        jobs = [
            pool.submit(prompts, b, v, s) for b in ax["benchmarks"] for v in VARIANTS for s in ax["seeds"]
        ]
        jobs += [
            pool.submit(cell, m, b, v, s)
            for m in ax["models"] for b in ax["benchmarks"] for v in VARIANTS for s in ax["seeds"]
        ]  # fmt: skip
        for job in jobs:
            job.result()
    (root / "DONE").write_text(marker(ax))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="/tmp/cotprobe-perf")
    p.add_argument("--models", type=int, default=22)
    p.add_argument("--benches", type=int, default=8)
    p.add_argument("--items", type=int, default=1000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--resamples", type=int, default=2000)
    args = p.parse_args()
    ax = axes(args.models, args.benches, args.items, args.seeds)
    root = Path(args.root)
    if not (root / "DONE").exists() or (root / "DONE").read_text() != marker(ax):
        start = time.perf_counter()
        write_grid(root, ax)
        print(f"wrote the synthetic grid in {time.perf_counter() - start:.0f} s")
    os.chdir(root)
    entries = cell_entries(ax)
    config = {"bootstrap": {"n": args.resamples, "seed": 0}}
    print(f"{len(entries)} cells ({args.models} models x {args.benches} benches x 9 variants x {args.seeds} "
          f"seeds x 2 judges) x {args.items} items, {args.resamples} resamples, {os.cpu_count()} CPUs")  # fmt: skip
    threads = available_cpus()  # what the rule's --threads 0 gives
    start, cpu = time.perf_counter(), time.process_time()
    study = metrics.load(entries)
    loaded = time.perf_counter()
    analysis = metrics.Analysis.from_config(config)
    steps = {}
    t = time.perf_counter()
    boots = metrics._boot(study, analysis.bootstrap)
    cells = metrics.cell_rows(study, analysis.max_unparsed)
    steps["cells"] = time.perf_counter() - t
    for name, fn in (
        ("summary", lambda: metrics.summary_rows(study, analysis, _boot_cache=boots)),
        ("effects", lambda: metrics.effect_rows(study, analysis, _boot_cache=boots)),
        ("auroc", lambda: metrics.auroc_rows(study, analysis, threads=threads)),
        ("aurc", lambda: metrics.aurc_rows(study, analysis, threads=threads)),
    ):
        t = time.perf_counter()
        fn()
        steps[name] = time.perf_counter() - t
    total = time.perf_counter() - start
    # CPU time beside wall time: on a busy machine wall time overstates what a quiet one takes.
    print(f"compute_metrics: {total:.1f} s wall, {time.process_time() - cpu:.1f} s CPU  (reading {loaded - start:.1f} s; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + f"; {cells.height} cell rows)")  # fmt: skip
    t = time.perf_counter()
    table = agreement.agreement_rows(entries, JUDGES, config)
    print(f"judge agreement: {time.perf_counter() - t:.1f} s ({table.height} rows)")


if __name__ == "__main__":
    main()
