"""Command line: one verb per pipeline stage, so any single cell can be run by hand.

Each Snakemake rule calls exactly one of these verbs with the rule's slice of config as a JSON
``--spec`` (the same JSON is the rule's param, so changing it reruns the cell). Bad input ends
with one ``error:`` line that names the file, row and field, and exit status 2.

This module is the parser and the dispatch only; what each verb does is in ``cotprobe.stages``.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from cotprobe.io import InputError
from cotprobe.specs import ServerSettings
from cotprobe.stages import (
    acknowledge,
    aggregate,
    build_model,
    check_config,
    early_answer,
    ensemble,
    generate,
    judge,
    parse,
    perturb,
    prepare,
    train,
)
from cotprobe.threads import pin_threads


def _add_share_args(s) -> None:
    # The workflow passes the first three from the study's model_server section
    # (ServerSettings.as_args); a cell started by hand loads its model itself unless told.
    default, opt = ServerSettings(), ServerSettings.OPTIONS
    s.add_argument(opt["load_timeout"], dest="server_wait", type=float, default=default.load_timeout,
                   help=f"seconds to wait for a model server to load (default: {default.load_timeout:.0f});"
                        " a server whose process is gone fails the cell at once")  # fmt: skip
    s.add_argument(opt["share"], action=argparse.BooleanOptionalAction, default=False,
                   help="use (or start) this host's shared server of the model instead of loading it here")  # fmt: skip
    s.add_argument("--server-root", default=os.environ.get("COTPROBE_SERVER_ROOT", ".cotprobe/model_servers"),
                   help="shared servers' addresses, leases, logs and load ledger")  # fmt: skip
    s.add_argument(opt["idle_timeout"], type=float, default=default.idle_timeout,
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
    s.set_defaults(func=prepare.run)

    s = sub.add_parser("perturb", help="apply one prompt variant to a benchmark's samples")
    s.add_argument("--samples", required=True)
    s.add_argument("--bench", required=True)
    s.add_argument("--variant", required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--images", help="an image variant's image folder (results/prompts/.../seed{seed}.images)")
    s.add_argument("--report", help="JSON of kept and skipped samples per category, and every image edit")
    s.set_defaults(func=perturb.run)

    s = sub.add_parser("image-skips", help="tabulate the image variants' kept and skipped samples")
    s.add_argument("--out", required=True, help="results/metrics/image_skips.csv")
    s.add_argument("reports", nargs="+", help="results/prompts/{bench}/{variant}/seed{seed}.report.json")
    s.set_defaults(func=perturb.image_skips)

    s = sub.add_parser("build-model", help="build an offline model (its kind: cotprobe.models.BUILDERS)")
    s.add_argument("--spec", required=True, help='JSON: {"kind":"tiny","seed":0,"warm_start":{...}}')
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads for the warm start")
    s.set_defaults(func=build_model.run)

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
    s.set_defaults(func=generate.run)

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
    s.set_defaults(func=early_answer.run)

    s = sub.add_parser("early-answering", help="the early-answering table (agreement with intervals)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, seeds")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=early_answer.table)

    s = sub.add_parser("early-answering-figure", help="draw the early-answering curves")
    s.add_argument("--table", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=early_answer.figure)

    s = sub.add_parser(
        "serve-model",
        help="load a model once and serve it to this workflow's cells (its own protocol; an "
        "OpenAI-compatible server is python -m cotprobe.serving.openai_server)",
    )
    s.add_argument("--model", required=True, help="model id")
    s.add_argument("--spec", required=True, help="model slice of config, JSON (as for generate)")
    s.add_argument("--url-file", required=True, help="where to write the server's address once loaded")
    s.add_argument(
        "--lease-file", help="exit once no cell has held a lease on this file for --idle-timeout s"
    )
    s.add_argument("--idle-timeout", type=float, default=300.0)
    s.add_argument("--ledger", help="append one JSON line per model load to this file")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    s.set_defaults(func=generate.serve_model)

    s = sub.add_parser("judge", help="judge one cell's generations")
    s.add_argument("--judge", required=True, help="judge id (recorded in every verdict)")
    s.add_argument("--spec", required=True, help="judge slice of config, JSON")
    s.add_argument("--prompts", required=True)
    s.add_argument("--generations", required=True)
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads of a local LLM judge")
    _add_share_args(s)
    s.set_defaults(func=judge.run)

    s = sub.add_parser("parse", help="read the answer letter of one cell's generations (current parser)")
    s.add_argument("--prompts", required=True)
    s.add_argument("--generations", required=True)
    s.add_argument("--out", required=True, help="results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl")
    s.add_argument(
        "--extractor",
        default="null",
        help="JSON: the LLM extractor's spec for what the rules cannot read (null: off)",
    )
    s.set_defaults(func=parse.run)

    s = sub.add_parser("ensemble", help="combine member judges' verdicts of one cell")
    s.add_argument("--judge", required=True, help="ensemble id (recorded in every verdict)")
    s.add_argument("--spec", required=True, help='JSON: {"kind":"ensemble","args":{"judges":[..],"rule":..}}')
    s.add_argument("--verdicts", required=True, nargs="+", help="member verdict files, in member order")
    s.add_argument("--out", required=True)
    s.set_defaults(func=ensemble.run)

    s = sub.add_parser("acknowledge", help="does the think admit the plant? one planted-variant cell")
    s.add_argument("--judge", required=True, help="judge id (recorded in every row)")
    s.add_argument("--spec", required=True, help="judge slice of config, JSON (kind rule or llm)")
    s.add_argument("--prompts", required=True, help="the planted variant's prompts")
    s.add_argument("--base", required=True, help="the same model's generations on the base prompt")
    s.add_argument("--generations", required=True, help="the model's generations under the variant")
    s.add_argument("--out", required=True)
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads of a local LLM judge")
    _add_share_args(s)
    s.set_defaults(func=acknowledge.run)

    s = sub.add_parser("acknowledgment", help="the acknowledgment table (shares with bootstrap intervals)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, planted variants, seeds, judges")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=acknowledge.table)

    s = sub.add_parser("acknowledgment-figure", help="draw the acknowledgment table")
    s.add_argument("--table", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=acknowledge.figure)

    s = sub.add_parser("agreement", help="judge agreement table (strict, Fleiss' and Cohen's kappa)")
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, variants, seeds, judges")
    s.add_argument("--judges", required=True, help="JSON list of the judges compared")
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (bootstrap)")
    s.add_argument("--out", required=True)
    s.set_defaults(func=aggregate.agreement_table)

    s = sub.add_parser("agreement-figure", help="draw the judge agreement table")
    s.add_argument("--agreement", required=True)
    s.add_argument("--out", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=aggregate.agreement_figure)

    s = sub.add_parser("judge-cost", help="count the calls and tokens each LLM judge would spend (dry run)")
    s.add_argument("--configfile", default="config/config.yaml")
    s.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    s.add_argument(
        "--samples-per-bench", type=int, default=None, help="samples of a benchmark not yet prepared"
    )
    s.set_defaults(func=judge.cost)

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
    s.set_defaults(func=aggregate.metric_tables)

    s = sub.add_parser("tables", help="the paper's tables (CSV) and their HTML page, from the metric tables")
    for name in ("summary", "effects", "auroc", "cells"):
        s.add_argument(f"--{name}", required=True, help=f"results/metrics/{name}.csv")
    s.add_argument(
        "--agreement", default=None, help="results/metrics/judge_agreement.csv (two or more judges)"
    )
    s.add_argument("--analysis", default="{}", help="JSON: the config's analysis slice (max_unparsed)")
    s.add_argument("--out-dir", required=True, help="results/tables")
    s.set_defaults(func=aggregate.paper_tables)

    s = sub.add_parser(
        "samples", help="every cell's samples joined in one table, and a static browser over it"
    )
    s.add_argument("--axes", required=True, help="JSON: models, benchmarks, variants, seeds, judges")
    s.add_argument("--table", required=True, help="the joined table (parquet)")
    s.add_argument("--browser", required=True, help="the browser: one self-contained HTML page")
    s.set_defaults(func=aggregate.sample_browser)

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
    s.set_defaults(func=aggregate.study_figures)

    s = sub.add_parser("train", help="GRPO-train one (run, seed) with TRL; saves step{N} model dirs")
    _add_training_args(s, base_help="model dir to start from")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: all CPUs)")
    s.set_defaults(func=train.run)

    s = sub.add_parser("verl-prepare", help="write verl's parquet, reward file, overrides and run script")
    _add_training_args(s, base_help="model dir or hub id to start from")
    s.add_argument("--name", required=True, help="experiment name, e.g. {run}-s{seed}")
    s.set_defaults(func=train.verl_prepare)

    s = sub.add_parser("training-curves", help="metrics of every saved training step, table and figure")
    s.add_argument("--summary", required=True, help="results/metrics/summary.csv")
    s.add_argument("--runs", required=True, help="JSON: run -> base model and (seed, step, model) list")
    s.add_argument("--out", required=True, help="results/metrics/training_curves.csv")
    s.add_argument("--judge", default=None, help="judge whose consistency the figure draws (default: first)")
    s.add_argument("--parsed-axes", default=None,
                   help="JSON {benchmarks, variants, seeds}: add the think diagnostics from results/parsed")  # fmt: skip
    s.add_argument("--figure", required=True, help="output .png (a .pdf is written beside it)")
    s.set_defaults(func=train.training_curves)

    s = sub.add_parser("check-config", help="validate a study config and count its cells")
    s.add_argument("--configfile", default="config/config.yaml")
    s.add_argument("--schema", default="workflow/schemas/config.schema.yaml")
    s.set_defaults(func=check_config.run)
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
