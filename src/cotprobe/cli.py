"""Command line: one verb per pipeline stage, so any single cell can be run by hand.

Each Snakemake rule calls exactly one of these verbs with the rule's slice of config as a JSON
``--spec`` (the same JSON is the rule's param, so changing it reruns the cell). Bad input ends
with one ``error:`` line that names the file, row and field, and exit status 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from cotprobe.io import InputError, ResumableJsonl, atomic_path, finish_jsonl, read_jsonl, write_jsonl
from cotprobe.records import (
    GENERATION_CHECKS,
    PROMPT_CHECKS,
    SAMPLE_CHECKS,
    VERDICT_CHECKS,
    Generation,
    Prompt,
    Sample,
)
from cotprobe.serving.protocol import LOAD_TIMEOUT
from cotprobe.serving.protocol import hash_weights as _hash_weights
from cotprobe.threads import pin_threads

log = logging.getLogger("cotprobe")


def _spec(text: str, flag: str = "--spec") -> dict[str, Any]:
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{flag}: not valid JSON ({err.msg})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{flag}: expected a JSON object")
    return spec


def _load(path: str, cls, checks) -> list:
    """Records of ``cls`` from a stage file: every field without a default present, checked, ids unique."""
    from dataclasses import MISSING, fields

    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    rows = read_jsonl(path, required=required, unique="id", checks=checks, non_empty=True)
    names = {f.name for f in fields(cls)}
    return [cls(**{k: v for k, v in row.items() if k in names}) for row in rows]


def load_samples(path: str) -> list[Sample]:
    return _load(path, Sample, SAMPLE_CHECKS)


def load_prompts(path: str) -> list[Prompt]:
    return _load(path, Prompt, PROMPT_CHECKS)


def load_generations(path: str) -> list[Generation]:
    return _load(path, Generation, GENERATION_CHECKS)


# ---------------------------------------------------------------- stages
def cmd_prepare(args) -> None:
    from cotprobe.benchmarks import BENCHMARKS

    spec = _spec(args.spec)
    bench = BENCHMARKS.get(spec["kind"])(**spec.get("args", {}))
    out = Path(args.out)
    samples = bench.prepare(out.parent)
    if not samples:
        raise InputError(f"benchmark {spec['kind']!r}: no samples ({bench.report(samples)})")
    seen: dict[str, int] = {}
    for i, s in enumerate(samples, start=1):
        if s.id in seen:  # two samples with one id would replace each other's results downstream
            raise InputError(
                f"benchmark {spec['kind']!r}: samples {seen[s.id]} and {i} have the same id {s.id!r}"
            )
        seen[s.id] = i
    write_jsonl(out, (s.to_dict() for s in samples))
    report = bench.report(samples)
    with atomic_path(out.with_name("report.json")) as tmp:
        tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
    log.info(
        "wrote %d samples of %s to %s (%d source rows; dropped: %s)",
        len(samples),
        spec["kind"],
        out,
        report.get("n_rows", len(samples)),
        report.get("dropped") or "none",
    )


def cmd_perturb(args) -> None:
    from cotprobe.variants import is_image_variant, perturb_cell

    samples = load_samples(args.samples)
    if is_image_variant(args.variant) and not args.images:
        raise InputError(f"variant {args.variant!r} transforms images: give --images <dir> (and --report)")
    if args.images:
        Path(args.images).mkdir(parents=True, exist_ok=True)
    cell = perturb_cell(samples, args.variant, bench=args.bench, seed=args.seed, image_dir=args.images)
    report = cell.report(bench=args.bench, variant=args.variant, seed=args.seed)
    if args.report:
        with atomic_path(args.report) as tmp:
            tmp.write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if not cell.prompts:
        counts = "; ".join(f"{c}: {r['n_samples']}" for c, r in report["categories"].items())
        raise InputError(
            f"variant {args.variant!r} on {args.bench!r}: every sample skipped (categories {counts});"
            " the transform's effect on these answers is not known: drop the variant or the benchmark"
        )
    write_jsonl(args.out, (p.to_dict() for p in cell.prompts))
    log.info("wrote %d %s prompts (seed %d) to %s", len(cell.prompts), args.variant, args.seed, args.out)
    if report["n_skipped"]:
        log.info("skipped %d of %d samples (see %s)", report["n_skipped"], len(samples), args.report)


def cmd_image_skips(args) -> None:
    import csv

    from cotprobe.variants.image import SKIP_COLUMNS, skip_rows

    reports = []
    for path in args.reports:
        try:
            reports.append(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as err:
            raise InputError(f"{path}: cannot read the perturb report ({err})") from None
    rows = skip_rows(reports)
    with atomic_path(args.out) as tmp, tmp.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=SKIP_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    log.info(
        "wrote %d rows (%d skipped samples) to %s", len(rows), sum(r["n_skipped"] for r in rows), args.out
    )


def cmd_build_model(args) -> None:
    from cotprobe.tiny_model import build_tiny_model

    spec = _spec(args.spec)
    if spec.get("kind") != "tiny":
        raise InputError(f"--spec: unknown model builder {spec.get('kind')!r} (known: tiny)")
    out = Path(args.out)
    warm = spec.get("warm_start")
    if not warm:
        build_tiny_model(out, seed=int(spec.get("seed", 0)))
        log.info("built tiny random model in %s", out)
        return
    import tempfile

    from cotprobe.organism import HELD_OUT_ORDERS, warm_start

    warm = dict(warm)
    if warm.pop("hold_out_orders", False):
        warm["exclude_orders"] = HELD_OUT_ORDERS
    with tempfile.TemporaryDirectory(prefix="tiny-init-") as tmp:
        init = build_tiny_model(Path(tmp) / "init", seed=int(spec.get("seed", 0)))
        summary = warm_start(init, out, threads=args.threads, **warm)
    log.info("warm-started tiny model in %s: %s", out, summary)


def _cache_key(spec: dict[str, Any], prompts_path: str, seed: int) -> str:
    """Identity of a generation run: model (path + weights fingerprint), prompts, sampling, seed."""
    h = hashlib.sha256()
    h.update(json.dumps(spec, sort_keys=True).encode())
    h.update(Path(prompts_path).read_bytes())
    h.update(str(seed).encode())
    _hash_weights(h, spec["path"], (spec.get("settings") or {}).get("revision"))
    return h.hexdigest()[:16]


def cmd_generate(args) -> None:
    from dataclasses import replace

    from cotprobe.backends.base import for_scoring
    from cotprobe.serving import open_backend

    spec = _spec(args.spec)
    prompts = load_prompts(args.prompts)
    # The letter set is not a sampling setting: it only decides which letters are scored.
    sampling = {k: v for k, v in spec["generation"].items() if k != "letters"}
    letter_set = spec["generation"].get("letters", "options")
    out = ResumableJsonl(args.out, _cache_key(spec, args.prompts, args.seed), required=("text", "parse_status"),
                         stage="generate", unit="prompts", verb="generated")  # fmt: skip
    todo = out.resume(prompts)

    backend, lease = open_backend(args.model, spec, _share(args), server_file=args.server_file,
                                  server_wait=args.server_wait, threads=args.threads)  # fmt: skip
    with backend:  # closed on every path: an unclosed vLLM engine hangs the exit
        index = {p.id: i for i, p in enumerate(prompts)}

        def work(chunk):
            # The chunk's seed depends on its first prompt's position, so a resumed run draws the same.
            chunk_seed = args.seed * 1_000_003 + index[chunk[0].id]
            return [g.to_dict() for g in backend.generate(chunk, model_id=args.model, seed=chunk_seed,
                                                          sampling=sampling)]  # fmt: skip

        by_id = out.fill(todo, int(sampling["batch_size"]), work)
        generations = [Generation(**by_id[p.id]) for p in prompts]
        t1 = time.perf_counter()
        scores = backend.letter_scores([for_scoring(p, letter_set) for p in prompts], generations)
        scores = [replace(s, letter_set=letter_set) for s in scores]
        log.info("letter scores for %d generations in %.1fs", len(scores), time.perf_counter() - t1)
        _write_scores(args.logits_out, scores)
        out.finish(g.to_dict() for g in generations)
    if lease is not None:
        lease.release()


def cmd_early_answer(args) -> None:
    import polars as pl

    from cotprobe import early_answer
    from cotprobe.backends.base import for_scoring
    from cotprobe.parsing import reparse
    from cotprobe.serving import open_backend

    spec = _spec(args.spec)
    prompts = load_prompts(args.prompts)
    options = {p.id: p.options for p in prompts}
    base = [reparse(g, options[g.id]) for g in load_generations(args.generations) if g.id in options]
    units, unit = early_answer.word_units, "words"
    if spec["backend"] in ("hf", "vllm"):  # cut at the model's own tokens (its tokenizer, no weights)
        from transformers import AutoTokenizer

        revision = (spec.get("settings") or {}).get("revision")
        tokenizer = AutoTokenizer.from_pretrained(spec["path"], revision=revision)
        units, unit = (lambda text: early_answer.token_units(tokenizer, text)), "tokens"
    rows, pairs = early_answer.early_pairs(prompts, base, units)
    letter_set = spec["generation"].get("letters", "options")
    backend, lease = open_backend(args.model, spec, _share(args), server_wait=args.server_wait,
                                  threads=args.threads)  # fmt: skip
    try:
        with backend:
            scored = [(for_scoring(p, letter_set), g) for p, g in pairs]
            scores = backend.letter_scores([p for p, _ in scored], [g for _, g in scored]) if scored else []
    finally:
        if lease is not None:
            lease.release()
    table = pl.DataFrame(
        early_answer.with_scores(rows, scores, unit),
        schema={k: getattr(pl, v) for k, v in early_answer.SCHEMA.items()},
    )
    with atomic_path(args.out) as tmp:
        table.write_parquet(tmp)
    log.info(
        "%s: %d items x %d cuts, %d scored", args.out, len(prompts), len(early_answer.FRACTIONS), len(pairs)
    )


def cmd_early_answer_table(args) -> None:
    from cotprobe import early_answer, metrics, stats
    from cotprobe.workflow import early_entries

    entries = early_entries(_spec(args.axes, "--axes"))
    table = early_answer.early_rows(entries, stats.Bootstrap.from_config(_spec(args.analysis)))
    metrics.write_csv(table, args.out)
    log.info("early answering over %d rows written", table.height)


def cmd_early_answer_figure(args) -> None:
    from cotprobe import figures

    figures.plot_early_answering(args.table, args.out)


def cmd_serve_model(args) -> None:
    from cotprobe.backends import BACKENDS
    from cotprobe.serving.server import serve

    if BACKENDS.get(_spec(args.spec)["backend"]).loads_weights:
        import torch  # noqa: F401  (imported here so that pin_threads sets it: the env caps at the cores)

        pin_threads(args.threads)
    serve(args.model, _spec(args.spec), args.url_file, lease_file=args.lease_file,
          idle_timeout=args.idle_timeout, ledger=args.ledger)  # fmt: skip


def _write_scores(path: str, scores) -> None:
    from dataclasses import asdict

    import polars as pl

    df = pl.DataFrame(
        [asdict(s) for s in scores],
        schema={
            "id": pl.String,
            "letters": pl.List(pl.String),
            "probs": pl.List(pl.Float64),
            "entropy": pl.Float64,
            "p_correct": pl.Float64,
            "p_target": pl.Float64,
            "argmax_letter": pl.String,
            "answer_position": pl.String,
            "missing_reason": pl.String,
            "letter_set": pl.String,
        },
    )
    with atomic_path(path) as tmp:
        df.write_parquet(tmp)


def cmd_judge(args) -> None:
    from cotprobe.judges import ENSEMBLE, JUDGES
    from cotprobe.judges.base import build_verdict

    spec = _spec(args.spec)
    if spec["kind"] == ENSEMBLE:
        raise InputError(f"--spec: judge {args.judge!r} is an ensemble; run `cotprobe ensemble`")
    judge = JUDGES.get(spec["kind"])(**spec.get("args", {}))
    if args.share_load and hasattr(judge, "share"):
        judge.share = _share(args)
    from cotprobe.parsing import reparse

    prompts = load_prompts(args.prompts)
    generations = load_generations(args.generations)
    # The generation file's own parse may be an older parser's: read the letter again from the text.
    pairs = [(p, reparse(g, p.options)) for p, g in judge.pair(prompts, generations)]
    try:
        if judge.chunk_size:
            readings = _read_thinks_resumably(judge, pairs, spec, args)
        else:
            readings = judge.read_thinks(pairs)
            judge.check_readings(pairs, readings)
    finally:
        judge.close()
    verdicts = [build_verdict(args.judge, judge.version, p, g, r) for (p, g), r in zip(pairs, readings)]
    finish_jsonl(args.out, (v.to_dict() for v in verdicts))
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.quadrant] = counts.get(v.quadrant, 0) + 1
    log.info("%s: %s", args.out, counts)


def _judge_cache_key(spec: dict[str, Any], prompts_path: str, generations_path: str) -> str:
    """Identity of a judging run: the judge spec (model, template hash, ...), its inputs, the weights,
    and the parser (a reading checks the answer letter it read)."""
    from cotprobe.parsing import PARSER_VERSION

    h = hashlib.sha256(json.dumps(spec, sort_keys=True).encode())
    h.update(f"parser {PARSER_VERSION}".encode())
    for path in (prompts_path, generations_path):
        h.update(Path(path).read_bytes())
    args = spec.get("args", {})
    _hash_weights(h, str(args.get("path", "")), (args.get("settings") or {}).get("revision"))
    return h.hexdigest()[:16]


def _read_thinks_resumably(judge, pairs, spec: dict[str, Any], args) -> list:
    """A model-based judge's readings, chunk by chunk, each checkpointed in ``<out>.part``.

    Like ``cmd_generate`` (``ResumableJsonl``): a rerun with the same judge spec and input files reads
    back what was answered and asks only the rest.
    """
    from cotprobe.judges.base import ThinkReading

    out = ResumableJsonl(args.out, _judge_cache_key(spec, args.prompts, args.generations),
                         required=("letter", "reason", "raw"), stage="judge", unit="samples", verb="judged")  # fmt: skip
    todo = out.resume(pairs, id_of=lambda pair: pair[0].id)

    def work(chunk):
        readings = judge.read_thinks(chunk)
        judge.check_readings(chunk, readings)
        return [{"id": p.id, "letter": r.letter, "reason": r.reason, "raw": r.raw}
                for (p, _), r in zip(chunk, readings)]  # fmt: skip

    done = out.fill(todo, judge.chunk_size, work)
    return [ThinkReading(done[p.id]["letter"], done[p.id]["reason"], done[p.id]["raw"]) for p, _ in pairs]


def cmd_parse(args) -> None:
    from cotprobe.parsing import PARSER_VERSION, parse_record

    prompts = load_prompts(args.prompts)
    generations = {g.id: g for g in load_generations(args.generations)}
    prompt_ids = {p.id for p in prompts}
    missing = [p.id for p in prompts if p.id not in generations]
    extra = [i for i in generations if i not in prompt_ids]
    if missing:
        raise InputError(
            f"{args.generations}: no generation for prompt id {missing[0]!r} ({len(missing)} in all)"
        )
    if extra:
        raise InputError(f"{args.generations}: generation id {extra[0]!r} has no prompt in {args.prompts}")
    rows = [parse_record(p.id, generations[p.id].text, p.options) for p in prompts]
    extractor_spec = None if args.extractor == "null" else _spec(args.extractor, "--extractor")
    if extractor_spec:
        from cotprobe.extractor import Extractor, is_sent

        try:
            extractor = Extractor.from_spec(extractor_spec)
        except ValueError as err:
            raise InputError(f"--extractor: {err}") from None
        log.info("%s: %d answers the rules could not read go to the %s",
                 args.out, sum(map(is_sent, rows)), extractor.name)  # fmt: skip
        rows = extractor.extract(list(zip(prompts, rows)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.answer_rule] = counts.get(row.answer_rule, 0) + 1
    write_jsonl(args.out, (r.to_dict() for r in rows))
    log.info("%s: parser v%d, answer rules %s", args.out, PARSER_VERSION, counts)


def cmd_ensemble(args) -> None:
    from cotprobe.judges.ensemble import EnsembleJudge

    spec = _spec(args.spec)
    ensemble = EnsembleJudge(**spec.get("args", {}))
    if len(args.verdicts) != len(ensemble.members):
        raise InputError(f"--verdicts: {len(args.verdicts)} files for members {ensemble.members}")
    rows = {
        m: read_jsonl(
            path,
            required=("id", "quadrant", "answer_letter", "correct", "consistent"),
            unique="id",
            checks=VERDICT_CHECKS,
            non_empty=True,
        )
        for m, path in zip(ensemble.members, args.verdicts)
    }
    verdicts = ensemble.combine(args.judge, rows)
    write_jsonl(args.out, (v.to_dict() for v in verdicts))
    counts: dict[str, int] = {}
    for v in verdicts:
        counts[v.quadrant] = counts.get(v.quadrant, 0) + 1
    log.info("%s: %s", args.out, counts)


def cmd_acknowledge(args) -> None:
    from cotprobe import acknowledgment
    from cotprobe.parsing import reparse

    spec = _spec(args.spec)
    prompts = load_prompts(args.prompts)
    options = {p.id: p.options for p in prompts}
    # Both sides re-parsed by the current parser, as the judges do.
    base = [reparse(g, options[g.id]) for g in load_generations(args.base) if g.id in options]
    gens = [reparse(g, options[g.id]) for g in load_generations(args.generations) if g.id in options]
    reader = None
    if spec["kind"] == "llm":
        reader = acknowledgment.LLMAcknowledger(spec.get("args", {}))
        if args.share_load:
            reader.judge.share = _share(args)
    rows = acknowledgment.acknowledge(args.judge, spec, prompts, base, gens, reader)
    write_jsonl(args.out, (r.to_dict() for r in rows))
    moved = [r for r in rows if r.moved]
    log.info("%s: %d items, %d moved to the plant, %d acknowledge it", args.out, len(rows), len(moved),
             sum(bool(r.acknowledged) for r in moved))  # fmt: skip


def cmd_acknowledgment_table(args) -> None:
    from cotprobe import acknowledgment, metrics, stats
    from cotprobe.workflow import ack_entries

    entries = ack_entries(_spec(args.axes, "--axes"))
    table = acknowledgment.ack_rows(entries, stats.Bootstrap.from_config(_spec(args.analysis)))
    metrics.write_csv(table, args.out)
    log.info("acknowledgment over %d rows written", table.height)


def cmd_acknowledgment_figure(args) -> None:
    from cotprobe import figures

    figures.plot_acknowledgment(args.table, args.out)


def cmd_agreement(args) -> None:
    from cotprobe import agreement, metrics
    from cotprobe.workflow import cell_entries

    judges = json.loads(args.judges)
    table = agreement.agreement_rows(cell_entries(_spec(args.axes)), judges, _spec(args.analysis))
    metrics.write_csv(table, args.out)
    log.info("agreement of %s over %d groups written", judges, table.height)


def cmd_agreement_figure(args) -> None:
    from cotprobe import figures

    figures.plot_agreement(args.agreement, args.out)


def cmd_judge_cost(args) -> None:
    from cotprobe.judge_cost import cost_table, format_table

    print(format_table(cost_table(args.configfile, args.schema, samples_per_bench=args.samples_per_bench)))


def cmd_metrics(args) -> None:
    import polars as pl

    from cotprobe import metrics
    from cotprobe.workflow import cell_entries

    start = time.perf_counter()
    from cotprobe.threads import available_cpus

    tables = metrics.compute_metrics(
        cell_entries(_spec(args.axes)),
        metrics.Analysis.from_config(_spec(args.analysis)),
        threads=args.threads if args.threads > 0 else available_cpus(),
    )
    for name, table in tables.items():
        metrics.write_csv(table, getattr(args, name))
    cells = tables["cells"].filter(pl.col("flag_unparsed"))
    flagged = cells.select("model", "bench", "variant", "seed").unique().height
    log.info(
        "metrics over %d cell rows written in %.1f s (%d cells flagged for unparsed answers)",
        tables["cells"].height, time.perf_counter() - start, flagged,
    )  # fmt: skip


def cmd_figures(args) -> None:
    from cotprobe import figures

    figures.plot_accuracy(args.summary, args.accuracy, judge=args.judge)
    figures.plot_quadrants(args.summary, args.quadrants, judge=args.judge)
    figures.plot_auroc(args.auroc, args.auroc_out)
    figures.plot_forest(args.effects, args.forest)
    figures.plot_uncertainty(args.summary, args.uncertainty, judge=args.judge)
    figures.plot_risk_coverage(args.risk_coverage, args.aurc, args.risk_coverage_out)


def cmd_tables(args) -> None:
    from cotprobe import tables

    inputs = {name: getattr(args, name) for name in ("summary", "effects", "auroc", "cells", "agreement")}
    written = tables.write_tables(inputs, args.out_dir, _spec(args.analysis))
    log.info("tables written: %s", ", ".join(str(p) for p in written))


def cmd_samples(args) -> None:
    from cotprobe import samples
    from cotprobe.workflow import cell_entries

    table = samples.sample_table(cell_entries(_spec(args.axes)))
    samples.write_table(table, args.table)
    page = samples.write_browser(table, args.browser)
    log.info("%d samples joined into %s; browser at %s", table.height, args.table, page)


def _training_prompts(args, spec: dict[str, Any], images: dict[str, list[str]] | None = None) -> list[Prompt]:
    """The run's prompts; ``images`` (when given) receives every image of multi-image samples by id,
    and without it a multi-image sample is an error (the trl backend shows one image)."""
    from cotprobe.training.augment import training_prompts

    prompts = []
    for item in args.samples:
        bench, sep, path = item.partition("=")
        if not sep:
            raise InputError(f"--samples {item!r}: expected BENCH=PATH")
        samples = load_samples(path)
        for s in samples:
            if len(s.meta.get("images") or []) > 1:
                if images is None:
                    raise InputError(
                        f"{path}: sample {s.id!r} has {len(s.meta['images'])} images; this backend shows one "
                        "(use backend verl, or the training set's multi_image: drop)"
                    )
                images[s.id] = list(s.meta["images"])
        prompts += training_prompts(
            samples,
            bench=bench,
            seed=args.seed,
            augment=bool(spec.get("augment", True)),
            probability=float(spec.get("augment_probability", 0.1)),
        )
    return prompts


def cmd_train(args) -> None:
    from cotprobe.training import trl_backend

    spec = _spec(args.spec)
    if spec.get("backend", "trl") != "trl":
        raise InputError(f"--spec: backend {spec.get('backend')!r} is not run by this verb (only trl)")
    prompts = _training_prompts(args, spec)
    run = {k: v for k, v in spec.items() if k not in ("backend", "base", "data", "seeds", "gpus", "verl")}
    try:
        trl_backend.check_run(run)
    except ValueError as err:
        raise InputError(f"--spec: {err}") from None
    summary = trl_backend.train(
        run, base=Path(args.base), prompts=prompts, seed=args.seed, out=Path(args.out), threads=args.threads
    )
    log.info("trained %s: %s", args.out, summary)


def cmd_verl_prepare(args) -> None:
    from transformers import AutoProcessor

    from cotprobe.training import verl_backend

    spec = _spec(args.spec)
    template = AutoProcessor.from_pretrained(args.base).chat_template
    images: dict[str, list[str]] = {}
    prompts = _training_prompts(args, spec, images)
    paths = verl_backend.prepare(
        spec, base=args.base, prompts=prompts, seed=args.seed, out=Path(args.out),
        chat_template=template, name=args.name, images=images,
    )  # fmt: skip
    log.info("verl files: %s", {k: str(v) for k, v in paths.items()})


def cmd_training_curves(args) -> None:
    import polars as pl

    from cotprobe import metrics
    from cotprobe.training import curves

    runs = _spec(args.runs)
    diagnostics = None
    if args.parsed_axes:
        from cotprobe.io import read_jsonl
        from cotprobe.workflow import PARSED

        def read(model, bench, variant, seed):
            path = PARSED.format(model=model, bench=bench, variant=variant, seed=seed)
            return read_jsonl(path, required=("id", "think", "answer_text"))

        diagnostics = curves.diagnostic_rows(runs, _spec(args.parsed_axes), read)
    table = curves.curve_rows(pl.read_csv(args.summary, infer_schema_length=None), runs, diagnostics)
    metrics.write_csv(table, args.out)
    curves.plot_curves(table, args.figure, judge=args.judge)
    log.info("training curves: %d rows written to %s", table.height, args.out)


def cmd_check_config(args) -> None:
    import yaml

    from cotprobe.workflow import Grid

    config = yaml.safe_load(Path(args.configfile).read_text())
    grid = Grid.from_config(config, args.schema)
    n = len(list(grid.cells()))
    print(f"{args.configfile}: ok ({n} generation cells x {len(grid.judges)} judge(s))")


# ---------------------------------------------------------------- parser
def _share(args):
    """How the cell shares a model load (``cotprobe.serving.Share``, from the options ``_add_share_args``
    adds), or None without ``--share-load``."""
    from cotprobe.serving import Share

    if not args.share_load:
        return None
    return Share(root=args.server_root, idle_timeout=args.idle_timeout, threads=args.threads,
                 gpus=args.gpus, wait=args.server_wait)  # fmt: skip


def _add_share_args(s) -> None:
    load_timeout = float(os.environ.get("COTPROBE_SERVER_LOAD_TIMEOUT", LOAD_TIMEOUT))
    s.add_argument("--server-wait", type=float, default=load_timeout,
                   help="seconds to wait for a model server to load (default: $COTPROBE_SERVER_LOAD_TIMEOUT, else"
                        f" {LOAD_TIMEOUT:.0f}); a server whose process is gone fails the cell at once")  # fmt: skip
    # The workflow turns sharing on by environment, not by argument: it changes no output, so
    # switching it must not make Snakemake rerun cells (a changed shell command would).
    share = os.environ.get("COTPROBE_SHARE_LOAD", "0") == "1"
    s.add_argument("--share-load", action=argparse.BooleanOptionalAction, default=share,
                   help="use (or start) this host's shared server of the model instead of loading it here"
                        " (default: $COTPROBE_SHARE_LOAD=1)")  # fmt: skip
    s.add_argument("--server-root", default=os.environ.get("COTPROBE_SERVER_ROOT", ".cotprobe/model_servers"),
                   help="shared servers' addresses, leases, logs and load ledger")  # fmt: skip
    s.add_argument("--idle-timeout", type=float, default=float(os.environ.get("COTPROBE_SERVER_IDLE", "300")),
                   help="a shared server this cell starts exits after this many seconds without cells")  # fmt: skip
    s.add_argument("--gpus", type=int, default=0,
                   help="GPUs of the model: a server this cell starts first stops other models' idle servers")  # fmt: skip


def _add_training_args(s, *, base_help: str) -> None:
    """The options of both training verbs (``train``, ``verl-prepare``)."""
    s.add_argument("--spec", required=True, help="training run slice of config, JSON")
    s.add_argument("--base", required=True, help=base_help)
    s.add_argument("--samples", required=True, action="append", help="BENCH=samples.jsonl (repeatable)")
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True, help="results/training/{run}/seed{seed}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cotprobe", description=__doc__.splitlines()[0])
    p.add_argument(
        "--log-level",
        default=os.environ.get("COTPROBE_LOG_LEVEL", "INFO"),
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default: $COTPROBE_LOG_LEVEL or INFO); put it before the verb",
    )
    sub = p.add_subparsers(dest="verb", required=True)

    s = sub.add_parser("prepare", help="write a benchmark's normalised samples (+ images)")
    s.add_argument("--spec", required=True, help='benchmark slice of config, JSON: {"kind":..,"args":..}')
    s.add_argument("--out", required=True, help="results/data/{bench}/samples.jsonl")
    s.set_defaults(func=cmd_prepare)

    s = sub.add_parser("perturb", help="apply one prompt variant to a benchmark's samples")
    s.add_argument("--samples", required=True)
    s.add_argument("--bench", required=True)
    s.add_argument("--variant", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--images", help="an image variant's image folder (results/prompts/.../seed{seed}.images)")
    s.add_argument("--report", help="JSON of kept and skipped samples per category, and every image edit")
    s.set_defaults(func=cmd_perturb)

    s = sub.add_parser("image-skips", help="tabulate the image variants' kept and skipped samples")
    s.add_argument("--out", required=True, help="results/metrics/image_skips.csv")
    s.add_argument("reports", nargs="+", help="results/prompts/{bench}/{variant}/seed{seed}.report.json")
    s.set_defaults(func=cmd_image_skips)

    s = sub.add_parser("build-model", help="build the offline tiny Qwen2.5-VL-architecture model")
    s.add_argument("--spec", required=True, help='JSON: {"kind":"tiny","seed":0,"warm_start":{...}}')
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads for the warm start")
    s.set_defaults(func=cmd_build_model)

    s = sub.add_parser("generate", help="generate responses and letter scores for one cell")
    s.add_argument("--model", required=True, help="model id (recorded in every record)")
    s.add_argument("--spec", required=True, help="model slice of config, JSON")
    s.add_argument("--prompts", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--logits-out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    s.add_argument("--server-file", help="use the model loaded by `serve-model --url-file FILE`")
    _add_share_args(s)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser(
        "early-answer", help="letter scores after the base think cut at 0-100 %% of its tokens"
    )
    s.add_argument("--model", required=True, help="model id")
    s.add_argument("--spec", required=True, help="model slice of config, JSON (as for generate)")
    s.add_argument("--prompts", required=True, help="the base prompts")
    s.add_argument("--generations", required=True, help="the model's base generations")
    s.add_argument("--out", required=True, help="results/early_answer/{model}/{bench}/seed{seed}.parquet")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    _add_share_args(s)
    s.set_defaults(func=cmd_early_answer)

    s = sub.add_parser("early-answering", help="the early-answering table (agreement with intervals)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, seeds")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_early_answer_table)

    s = sub.add_parser("early-answering-figure", help="draw the early-answering curves")
    s.add_argument("--table", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=cmd_early_answer_figure)

    s = sub.add_parser("serve-model", help="load a model once and serve it to generation cells")
    s.add_argument("--model", required=True, help="model id")
    s.add_argument("--spec", required=True, help="model slice of config, JSON (as for generate)")
    s.add_argument("--url-file", required=True, help="where to write the server's address once loaded")
    s.add_argument(
        "--lease-file", help="exit once no cell has held a lease on this file for --idle-timeout s"
    )
    s.add_argument("--idle-timeout", type=float, default=300.0)
    s.add_argument("--ledger", help="append one JSON line per model load to this file")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    s.set_defaults(func=cmd_serve_model)

    s = sub.add_parser("judge", help="judge one cell's generations")
    s.add_argument("--judge", required=True, help="judge id (recorded in every verdict)")
    s.add_argument("--spec", required=True, help="judge slice of config, JSON")
    s.add_argument("--prompts", required=True)
    s.add_argument("--generations", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads of a local LLM judge")
    _add_share_args(s)
    s.set_defaults(func=cmd_judge)

    s = sub.add_parser("parse", help="read the answer letter of one cell's generations (current parser)")
    s.add_argument("--prompts", required=True)
    s.add_argument("--generations", required=True)
    s.add_argument("--out", required=True, help="results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl")
    s.add_argument(
        "--extractor",
        default="null",
        help="JSON: the LLM extractor's spec for what the rules cannot read (null: off)",
    )
    s.set_defaults(func=cmd_parse)

    s = sub.add_parser("ensemble", help="combine member judges' verdicts of one cell")
    s.add_argument("--judge", required=True, help="ensemble id (recorded in every verdict)")
    s.add_argument("--spec", required=True, help='JSON: {"kind":"ensemble","args":{"judges":[..],"rule":..}}')
    s.add_argument("--verdicts", required=True, nargs="+", help="member verdict files, in member order")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_ensemble)

    s = sub.add_parser("acknowledge", help="does the think admit the plant? one planted-variant cell")
    s.add_argument("--judge", required=True, help="judge id (recorded in every row)")
    s.add_argument("--spec", required=True, help="judge slice of config, JSON (kind rule or llm)")
    s.add_argument("--prompts", required=True, help="the planted variant's prompts")
    s.add_argument("--base", required=True, help="the same model's generations on the base prompt")
    s.add_argument("--generations", required=True, help="the model's generations under the variant")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads of a local LLM judge")
    _add_share_args(s)
    s.set_defaults(func=cmd_acknowledge)

    s = sub.add_parser("acknowledgment", help="the acknowledgment table (shares with bootstrap intervals)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, planted variants, seeds, judges")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_acknowledgment_table)

    s = sub.add_parser("acknowledgment-figure", help="draw the acknowledgment table")
    s.add_argument("--table", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=cmd_acknowledgment_figure)

    s = sub.add_parser("agreement", help="judge agreement table (strict, Fleiss' and Cohen's kappa)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, variants, seeds, judges")
    s.add_argument("--judges", required=True, help="JSON list of the judges compared")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=cmd_agreement)

    s = sub.add_parser("agreement-figure", help="draw the judge agreement table")
    s.add_argument("--agreement", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=cmd_agreement_figure)

    s = sub.add_parser("judge-cost", help="count the calls and tokens each LLM judge would spend (dry run)")
    s.add_argument("--configfile", default="config/config.yaml")
    s.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    s.add_argument(
        "--samples-per-bench", type=int, default=None, help="samples of a benchmark not yet prepared"
    )
    s.set_defaults(func=cmd_judge_cost)

    s = sub.add_parser("metrics", help="aggregate every cell into the metric tables")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, variants, seeds, judges")
    s.add_argument(
        "--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap, max_unparsed)"
    )
    for name in ("cells", "summary", "effects", "auroc", "aurc", "risk-coverage"):
        s.add_argument(
            f"--{name}", required=True, help=f"output: results/metrics/{name.replace('-', '_')}.csv"
        )
    s.add_argument("--threads", type=int, default=1, help="models resampled at once (0: all CPUs)")
    s.set_defaults(func=cmd_metrics)

    s = sub.add_parser("tables", help="the paper's tables (CSV) and their HTML page, from the metric tables")
    for name in ("summary", "effects", "auroc", "cells"):
        s.add_argument(f"--{name}", required=True, help=f"results/metrics/{name}.csv")
    s.add_argument(
        "--agreement", default=None, help="results/metrics/judge_agreement.csv (two or more judges)"
    )
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (max_unparsed)")
    s.add_argument("--out-dir", required=True, help="results/tables")
    s.set_defaults(func=cmd_tables)

    s = sub.add_parser(
        "samples", help="every cell's samples joined in one table, and a static browser over it"
    )
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, variants, seeds, judges")
    s.add_argument("--table", required=True, help="the joined table (parquet)")
    s.add_argument("--browser", required=True, help="the browser: one self-contained HTML page")
    s.set_defaults(func=cmd_samples)

    s = sub.add_parser("figures", help="draw the study's figures (PNG and PDF)")
    for name in ("summary", "effects", "auroc", "aurc", "risk-coverage"):
        s.add_argument(f"--{name}", required=True, help=f"results/metrics/{name.replace('-', '_')}.csv")
    s.add_argument("--accuracy", required=True, help="output .png (a .pdf is written beside it)")
    s.add_argument("--quadrants", required=True)
    s.add_argument("--auroc-out", required=True)
    s.add_argument("--forest", required=True)
    s.add_argument("--uncertainty", required=True)
    s.add_argument("--risk-coverage-out", required=True)
    s.add_argument("--judge", default=None, help="the judge (or ensemble) drawn; default: the first")
    s.set_defaults(func=cmd_figures)

    s = sub.add_parser("train", help="GRPO-train one (run, seed) with TRL; saves step{N} model dirs")
    _add_training_args(s, base_help="model dir to start from")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    s.set_defaults(func=cmd_train)

    s = sub.add_parser("verl-prepare", help="write verl's parquet, reward file, overrides and run script")
    _add_training_args(s, base_help="model dir or hub id to start from")
    s.add_argument("--name", required=True, help="experiment name, e.g. {run}-s{seed}")
    s.set_defaults(func=cmd_verl_prepare)

    s = sub.add_parser("training-curves", help="metrics of every saved training step, table and figure")
    s.add_argument("--summary", required=True, help="results/metrics/summary.csv")
    s.add_argument("--runs", required=True, help="JSON: run -> base model and (seed, step, model) list")
    s.add_argument("--out", required=True, help="results/metrics/training_curves.csv")
    s.add_argument("--judge", default=None, help="judge whose consistency the figure draws (default: first)")
    s.add_argument("--parsed-axes", default=None,
                   help="JSON {benchmarks, variants, seeds}: add the think diagnostics from results/parsed")  # fmt: skip
    s.add_argument("--figure", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=cmd_training_curves)

    s = sub.add_parser("check-config", help="validate a study config and count its cells")
    s.add_argument("--configfile", default="config/config.yaml")
    s.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    s.set_defaults(func=cmd_check_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if hasattr(args, "threads"):  # before any verb imports torch, so its pool starts at this size
        args.threads = pin_threads(args.threads)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from cotprobe.backends.base import BackendError
    from cotprobe.registry import UnknownPluginError
    from cotprobe.workflow import ConfigError

    try:
        args.func(args)
    except (InputError, ConfigError, UnknownPluginError, BackendError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
