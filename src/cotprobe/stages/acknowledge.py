"""Acknowledge: does the think of a model that moved to a planted answer admit the plant? One
planted-variant cell, and the acknowledgment table and figure."""

from __future__ import annotations

import logging

from cotprobe.io import write_jsonl
from cotprobe.records import load_generations, load_prompts
from cotprobe.specs import PluginParams
from cotprobe.stages import parse_params, parse_spec, share_of

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe import acknowledgment
    from cotprobe.parsing import reparse

    # The acknowledgment param (``Grid.ack_spec``): a judge's kind and args, its own extras, no version.
    spec = parse_params(args.spec, PluginParams)
    prompts = load_prompts(args.prompts)
    options = {p.id: p.options for p in prompts}
    # Both sides re-parsed by the current parser, as the judges do.
    base = [reparse(g, options[g.id]) for g in load_generations(args.base) if g.id in options]
    gens = [reparse(g, options[g.id]) for g in load_generations(args.generations) if g.id in options]
    reader = None
    if spec.kind == "llm":
        reader = acknowledgment.LLMAcknowledger(spec.args)
        if args.share_load:
            reader.judge.share = share_of(args)
    rows = acknowledgment.acknowledge(args.judge, spec, prompts, base, gens, reader)
    write_jsonl(args.out, (r.to_dict() for r in rows))
    moved = [r for r in rows if r.moved]
    log.info("%s: %d items, %d moved to the plant, %d acknowledge it", args.out, len(rows), len(moved),
             sum(bool(r.acknowledged) for r in moved))  # fmt: skip


def table(args) -> None:
    from cotprobe import acknowledgment, metrics, stats
    from cotprobe.workflow import ack_entries

    entries = ack_entries(parse_spec(args.axes, "--axes"))
    rows = acknowledgment.ack_rows(entries, stats.Bootstrap.from_config(parse_spec(args.analysis)))
    metrics.write_csv(rows, args.out)
    log.info("acknowledgment over %d rows written", rows.height)


def figure(args) -> None:
    from cotprobe import figures

    figures.plot_acknowledgment(args.table, args.out)
