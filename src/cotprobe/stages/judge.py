"""Judge: one judge's verdicts on one cell's generations; and the LLM judges' cost estimate.

A model-based judge reads the thinks chunk by chunk, each chunk's readings kept in the output's part
file: a rerun with the same judge spec and input files reads back what was answered and asks only
the rest.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from cotprobe.io import InputError, ResumableJsonl, finish_jsonl
from cotprobe.records import load_generations, load_prompts
from cotprobe.serving.protocol import hash_weights
from cotprobe.specs import PluginParams
from cotprobe.stages import parse_params, share_of

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe.judges import ENSEMBLE, JUDGES
    from cotprobe.judges.base import build_verdict
    from cotprobe.parsing import reparse

    spec = parse_params(args.spec, PluginParams)
    if spec.kind == ENSEMBLE:
        raise InputError(f"--spec: judge {args.judge!r} is an ensemble; run `cotprobe ensemble`")
    judge = JUDGES.get(spec.kind)(**spec.args)
    if args.share_load and hasattr(judge, "share"):
        judge.share = share_of(args)

    prompts = load_prompts(args.prompts)
    generations = load_generations(args.generations)
    # The generation file's own parse may be an older parser's: read the letter again from the text.
    pairs = [(p, reparse(g, p.options)) for p, g in judge.pair(prompts, generations)]
    try:
        if judge.chunk_size:
            readings = read_thinks_resumably(judge, pairs, spec, args)
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


def cache_key(spec: PluginParams, prompts_path: str, generations_path: str) -> str:
    """Identity of a judging run: the judge's param (model, template hash, ...), its inputs, the
    weights, and the parser (a reading checks the answer letter it read)."""
    from cotprobe.parsing import PARSER_VERSION

    h = hashlib.sha256(json.dumps(spec.as_param(), sort_keys=True).encode())
    h.update(f"parser {PARSER_VERSION}".encode())
    for path in (prompts_path, generations_path):
        h.update(Path(path).read_bytes())
    hash_weights(h, str(spec.args.get("path", "")), (spec.args.get("settings") or {}).get("revision"))
    return h.hexdigest()[:16]


def read_thinks_resumably(judge, pairs, spec: PluginParams, args) -> list:
    """A model-based judge's readings, chunk by chunk, each kept in ``<out>.part`` (``ResumableJsonl``)."""
    from cotprobe.judges.base import ThinkReading

    out = ResumableJsonl(args.out, cache_key(spec, args.prompts, args.generations),
                         required=("letter", "reason", "raw"), stage="judge", unit="samples", verb="judged")  # fmt: skip
    todo = out.resume(pairs, id_of=lambda pair: pair[0].id)

    def work(chunk):
        readings = judge.read_thinks(chunk)
        judge.check_readings(chunk, readings)
        return [{"id": p.id, "letter": r.letter, "reason": r.reason, "raw": r.raw}
                for (p, _), r in zip(chunk, readings)]  # fmt: skip

    done = out.fill(todo, judge.chunk_size, work)
    return [ThinkReading(done[p.id]["letter"], done[p.id]["reason"], done[p.id]["raw"]) for p, _ in pairs]


def cost(args) -> None:
    """``cotprobe judge-cost``: the calls and tokens each LLM judge would spend (a dry run)."""
    from cotprobe.judge_cost import cost_table, format_table

    print(format_table(cost_table(args.configfile, args.schema, samples_per_bench=args.samples_per_bench)))
