"""Build the offline tiny Qwen2.5-VL-architecture model: random, or warm-started on the organism task."""

from __future__ import annotations

import logging
from pathlib import Path

from cotprobe.io import InputError
from cotprobe.stages import parse_spec

log = logging.getLogger(__name__)


def run(args) -> None:
    from cotprobe.tiny_model import build_tiny_model

    spec = parse_spec(args.spec)
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
