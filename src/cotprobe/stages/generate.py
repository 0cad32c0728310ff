"""Generate: one cell's generations (resumable, chunk by chunk) and letter scores; and ``serve-model``.

A chunk's sampling seed depends on its first prompt's position, so a resumed run draws what an
uninterrupted one would. The letter scores are one parquet row per prompt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

from cotprobe.io import ResumableJsonl, atomic_path
from cotprobe.records import Generation, load_prompts
from cotprobe.serving.protocol import hash_weights
from cotprobe.specs import ModelParams
from cotprobe.stages import as_params, parse_params, parse_spec, share_of

log = logging.getLogger(__name__)


def cache_key(spec: dict[str, Any], prompts_path: str, seed: int) -> str:
    """Identity of a generation run: model (the param as received, and the weights' fingerprint),
    prompts, sampling, seed."""
    h = hashlib.sha256()
    h.update(json.dumps(spec, sort_keys=True).encode())
    h.update(Path(prompts_path).read_bytes())
    h.update(str(seed).encode())
    params = ModelParams.from_param(spec)
    hash_weights(h, params.path, params.revision)
    return h.hexdigest()[:16]


def run(args) -> None:
    from dataclasses import replace

    from cotprobe.backends.base import for_scoring
    from cotprobe.serving import open_backend

    spec = parse_spec(args.spec)  # hashed as received (cache_key); read through its type
    params = as_params(spec, ModelParams)
    prompts = load_prompts(args.prompts)
    # The letter set is not a sampling setting: it only decides which letters are scored.
    sampling, letter_set = params.sampling, params.letters
    out = ResumableJsonl(args.out, cache_key(spec, args.prompts, args.seed), required=("text", "parse_status"),
                         stage="generate", unit="prompts", verb="generated")  # fmt: skip
    todo = out.resume(prompts)

    backend, lease = open_backend(args.model, params, share_of(args), server_file=args.server_file,
                                  server_wait=args.server_wait, threads=args.threads)  # fmt: skip
    with backend:  # closed on every path: an unclosed vLLM engine hangs the exit
        index = {p.id: i for i, p in enumerate(prompts)}

        def work(chunk):
            chunk_seed = args.seed * 1_000_003 + index[chunk[0].id]
            return [g.to_dict() for g in backend.generate(chunk, model_id=args.model, seed=chunk_seed,
                                                          sampling=sampling)]  # fmt: skip

        by_id = out.fill(todo, int(sampling["batch_size"]), work)
        generations = [Generation(**by_id[p.id]) for p in prompts]
        t1 = time.perf_counter()
        scores = backend.letter_scores([for_scoring(p, letter_set) for p in prompts], generations)
        scores = [replace(s, letter_set=letter_set) for s in scores]
        log.info("letter scores for %d generations in %.1fs", len(scores), time.perf_counter() - t1)
        write_scores(args.logits_out, scores)
        out.finish(g.to_dict() for g in generations)
    if lease is not None:
        lease.release()


def write_scores(path: str, scores) -> None:
    """The letter scores (``LetterScores``, one row per prompt) as a parquet table, written atomically."""
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


def serve_model(args) -> None:
    """``cotprobe serve-model``: load one model and serve it to cells (``cotprobe.serving.server``)."""
    from cotprobe.backends import BACKENDS
    from cotprobe.serving.server import serve
    from cotprobe.threads import pin_threads

    params = parse_params(args.spec, ModelParams)
    if BACKENDS.get(params.backend).loads_weights:
        import torch  # noqa: F401  (imported here so that pin_threads sets it: the env caps at the cores)

        pin_threads(args.threads)
    serve(args.model, params, args.url_file, lease_file=args.lease_file,
          idle_timeout=args.idle_timeout, ledger=args.ledger)  # fmt: skip
