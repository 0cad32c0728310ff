"""The pipeline's stages: what each ``cotprobe`` verb does, one module per stage.

Each function takes the verb's parsed arguments (``cotprobe.cli`` builds the parser and dispatches)
and reads and writes the stage's files; the work itself lives in the domain modules (``benchmarks``,
``variants``, ``backends``, ``judges``, ``metrics``, ...). A Snakemake rule passes its slice of config
as a JSON ``--spec``; bad input raises ``InputError`` naming the file, row and field.

* ``prepare``: a benchmark's samples. ``perturb``: a prompt variant's prompts and image edits.
* ``build_model``: a model the workflow builds (``cotprobe.models``). ``generate``: generations and
  letter scores of one cell, and ``serve-model``. ``early_answer``: letter scores after a cut think.
* ``parse``: the answer letters. ``judge``: one judge's verdicts. ``ensemble``: combined verdicts.
  ``acknowledge``: does the think admit the plant.
* ``aggregate``: metric tables, agreement, paper tables, the sample browser and figures.
* ``train``: GRPO training and its curves. ``check_config``: validate a study config.

Light at import: heavy libraries are imported inside the functions.
"""

from __future__ import annotations

import json
from typing import Any, TypeVar

from cotprobe.io import InputError

T = TypeVar("T")


def parse_spec(text: str, flag: str = "--spec") -> dict[str, Any]:
    """A JSON object given on the command line (``--spec``, ``--axes``, ...)."""
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{flag}: not valid JSON ({err.msg})") from None
    if not isinstance(spec, dict):
        raise InputError(f"{flag}: expected a JSON object")
    return spec


def parse_params(text: str, param_type: type[T], flag: str = "--spec") -> T:
    """A ``--spec`` read as its typed param (``cotprobe.specs``: ``ModelParams``, ``PluginParams``)."""
    return as_params(parse_spec(text, flag), param_type, flag)


def as_params(spec: dict[str, Any], param_type: type[T], flag: str = "--spec") -> T:
    """An already parsed ``--spec`` as its typed param; a param without a key its type needs is the
    job's input error."""
    try:
        return param_type.from_param(spec)  # type: ignore[attr-defined]
    except ValueError as err:
        raise InputError(f"{flag}: {err}") from None


def share_of(args) -> Any:
    """How the verb's cell shares a model load (``cotprobe.serving.Share``), or None without
    ``--share-load``."""
    from cotprobe.serving import Share

    if not args.share_load:
        return None
    return Share(root=args.server_root, idle_timeout=args.idle_timeout, threads=args.threads,
                 gpus=args.gpus, wait=args.server_wait)  # fmt: skip
