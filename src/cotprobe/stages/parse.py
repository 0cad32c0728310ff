"""Parse: the answer letter of one cell's generations, read by the current parser (and optionally an
LLM extractor for what the rules cannot read)."""

from __future__ import annotations

import logging

from cotprobe.io import InputError, write_jsonl
from cotprobe.records import load_generations, load_prompts
from cotprobe.stages import parse_spec

log = logging.getLogger(__name__)


def run(args) -> None:
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
    extractor_spec = None if args.extractor == "null" else parse_spec(args.extractor, "--extractor")
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
