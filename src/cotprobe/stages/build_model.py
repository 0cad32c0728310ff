"""Build a model the workflow builds itself, with the builder its spec's ``kind`` names (``cotprobe.models``)."""

from __future__ import annotations

from pathlib import Path

from cotprobe.io import InputError
from cotprobe.registry import UnknownPluginError
from cotprobe.stages import parse_spec


def run(args) -> None:
    from cotprobe.models import BUILDERS

    spec = parse_spec(args.spec)
    try:
        builder = BUILDERS.get(str(spec.get("kind")))
    except UnknownPluginError as err:
        raise InputError(f"--spec: {err}") from None
    builder.build(spec, Path(args.out), threads=args.threads)
