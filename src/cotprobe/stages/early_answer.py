"""Early answering: letter scores after the base think cut at 0-100 % of its units, and its table
and figure."""

from __future__ import annotations

import logging

from cotprobe.io import atomic_path
from cotprobe.records import load_generations, load_prompts
from cotprobe.specs import ModelParams
from cotprobe.stages import parse_params, parse_spec, share_of

log = logging.getLogger(__name__)


def run(args) -> None:
    import polars as pl

    from cotprobe import early_answer
    from cotprobe.backends.base import for_scoring
    from cotprobe.parsing import reparse
    from cotprobe.serving import open_backend

    spec = parse_params(args.spec, ModelParams)
    prompts = load_prompts(args.prompts)
    options = {p.id: p.options for p in prompts}
    base = [reparse(g, options[g.id]) for g in load_generations(args.generations) if g.id in options]
    units, unit = early_answer.word_units, "words"
    if spec.backend in ("hf", "vllm"):  # cut at the model's own tokens (its tokenizer, no weights)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(spec.path, revision=spec.revision)
        units, unit = (lambda text: early_answer.token_units(tokenizer, text)), "tokens"
    rows, pairs = early_answer.early_pairs(prompts, base, units)
    letter_set = spec.letters
    backend, lease = open_backend(args.model, spec, share_of(args), server_wait=args.server_wait,
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


def table(args) -> None:
    from cotprobe import early_answer, metrics, stats
    from cotprobe.workflow import early_entries

    entries = early_entries(parse_spec(args.axes, "--axes"))
    rows = early_answer.early_rows(entries, stats.Bootstrap.from_config(parse_spec(args.analysis)))
    metrics.write_csv(rows, args.out)
    log.info("early answering over %d rows written", rows.height)


def figure(args) -> None:
    from cotprobe import figures

    figures.plot_early_answering(args.table, args.out)
