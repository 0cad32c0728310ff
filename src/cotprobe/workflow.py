"""The study grid as Snakemake sees it: config validation, path grammar, targets, rule params.

Imported by ``workflow/rules/common.smk`` while Snakemake builds the DAG, so it stays light:
no torch, no transformers. Every helper with a branch in it lives here (and is unit-tested)
rather than in the ``.smk`` files.

Path grammar (stage first, then the grid axes in a fixed order)::

    results/<stage>/[<judge>/][<model>/]<bench>/[<variant>/seed<seed>.<ext>]
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
import re
import socket
import uuid
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

from cotprobe.judges import ENSEMBLE
from cotprobe.parsing import PARSER_VERSION
from cotprobe.specs import MAX_UNPARSED, Bootstrap, Generation, ModelParams, PluginParams

BASE_VARIANT = "base"  # the unperturbed prompt every effect is measured against (metrics.BASE_VARIANT)

SAMPLES = "results/data/{bench}/samples.jsonl"
PROMPTS = "results/prompts/{bench}/{variant}/seed{seed}.jsonl"
# An image variant's perturb job also writes its transformed images (named by content hash) and a
# report of the samples it kept and skipped per category (cotprobe.variants.image).
PROMPT_IMAGES = "results/prompts/{bench}/{variant}/seed{seed}.images"
PERTURB_REPORT = "results/prompts/{bench}/{variant}/seed{seed}.report.json"
# Only with an image variant: every image cell's kept/skipped counts per category, for the report.
IMAGE_SKIPS = "results/metrics/image_skips.csv"
GENERATIONS = "results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl"
LOGITS = "results/logits/{model}/{bench}/{variant}/seed{seed}.parquet"
# The generations' answers read by the current parser (cotprobe.parsing): a parser change reruns
# these, the verdicts and the metrics, never the generations.
PARSED = "results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl"
VERDICTS = "results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl"
BUILT_MODEL = "resources/models/{model}"
# Training (cotprobe.training): data, and one HF model dir per saved step of each run and seed,
# evaluated as model ``{run}-s{seed}-step{step}``.
TRAINING_DATA = "results/training/data/{data}/samples.jsonl"
TRAINED = "results/training/{run}/seed{seed}/step{step}"
TRAINED_MODEL_ID = "{run}-s{seed}-step{step}"
TRAINING_CURVES = "results/metrics/training_curves.csv"
TRAINING_FIGURES = ("results/figures/training_curves.png", "results/figures/training_curves.pdf")
METRIC_NAMES = ("cells", "summary", "effects", "auroc", "aurc", "risk_coverage")
METRICS = tuple(f"results/metrics/{name}.csv" for name in METRIC_NAMES)
FIGURE_NAMES = ("accuracy", "quadrants", "auroc", "delta_forest", "uncertainty", "risk_coverage")
FIGURES = tuple(f"results/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf"))
# Every cell's samples joined, and the static browser over them (cotprobe.samples).
SAMPLE_TABLE = "results/samples/samples.parquet"
SAMPLE_BROWSER = "results/samples/browser.html"
# Only with two or more judges to compare (Grid.agreement_judges).
AGREEMENT = "results/metrics/judge_agreement.csv"
AGREEMENT_FIGURES = ("results/figures/judge_agreement.png", "results/figures/judge_agreement.pdf")
# The paper's tables (cotprobe.tables), as CSV and as one HTML page for the report.
# Does the think admit the plant? (cotprobe.acknowledgment)
ACKNOWLEDGMENT = "results/acknowledgment/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl"
ACK_TABLE = "results/metrics/acknowledgment.csv"
ACK_FIGURES = ("results/figures/acknowledgment.png", "results/figures/acknowledgment.pdf")
# Early answering (cotprobe.early_answer)
EARLY_ANSWER = "results/early_answer/{model}/{bench}/seed{seed}.parquet"
EARLY_TABLE = "results/metrics/early_answering.csv"
EARLY_FIGURES = ("results/figures/early_answering.png", "results/figures/early_answering.pdf")
TABLE_NAMES = ("table1_accuracy", "table_delta", "table_auroc", "table3_agreement", "table_abstain", "audit")
TABLES = (*(f"results/tables/{name}.csv" for name in TABLE_NAMES), "results/tables/tables.html")
# Ensembles added when a study lists several judges and configures none (majority, strict).
AUTO_ENSEMBLES = {"ensemble": "majority", "ensemble-strict": "strict"}


def module_constant(module: str, name: str) -> int:
    """The integer ``name = <int>`` written at the top level of ``module``, read without importing it.

    For versions that live in modules too heavy for the DAG build (polars at import): the way
    setuptools reads a package's version attribute statically.
    """
    spec = importlib.util.find_spec(module)
    source = Path(spec.origin).read_text(encoding="utf-8")
    found = re.findall(rf"^{re.escape(name)}\s*(?::\s*int\s*)?=\s*(\d+)\b", source, flags=re.MULTILINE)
    if len(found) != 1:
        raise RuntimeError(f"{module}: expected one top-level '{name} = <int>', found {len(found)}")
    return int(found[0])


# The aggregates' code versions, beside that code; bumping one recomputes its rules' outputs.
METRICS_VERSION = module_constant("cotprobe.metrics", "METRICS_VERSION")
FIGURES_VERSION = module_constant("cotprobe.figures", "FIGURES_VERSION")
SAMPLES_VERSION = module_constant("cotprobe.samples", "SAMPLES_VERSION")


class ConfigError(ValueError):
    """An invalid study config; the message names the offending key."""


def _key_path(parts) -> str:
    out = "config"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


# A key that names a secret (the value would land in rule params, .snakemake/ records and logs);
# ``*_env`` keys name the environment variable instead, which is the way to pass one.
_SECRET_KEY = re.compile(
    r"(^|_)(api_?key|secret|password|passwd|token|auth|bearer|credentials?)($|_)", re.IGNORECASE
)
# Values shaped like common API keys (OpenAI, Anthropic, Hugging Face, Google, bearer headers).
_SECRET_VALUE = re.compile(
    r"^(sk-[A-Za-z0-9_-]{12,}|hf_[A-Za-z0-9]{20,}|AIza[0-9A-Za-z_-]{30,}|Bearer\s+\S{12,})"
)


def check_no_secrets(config: Any, parts: tuple = ()) -> None:
    """Refuse a config that holds a secret, naming where (never the value).

    Everything in the config can reach a rule's params, which Snakemake records in plain text.
    """
    if isinstance(config, dict):
        for key, value in config.items():
            here = (*parts, key)
            if isinstance(key, str) and _SECRET_KEY.search(key) and not key.endswith("_env") and value:
                raise ConfigError(
                    f"{_key_path(here)}: looks like a secret; never write one into a config (it reaches "
                    f"Snakemake's records and logs). Export it as an environment variable and name that, e.g. "
                    f"api_key_env: MY_KEY"
                )
            check_no_secrets(value, here)
    elif isinstance(config, list):
        for i, value in enumerate(config):
            check_no_secrets(value, (*parts, i))
    elif isinstance(config, str) and _SECRET_VALUE.match(config.strip()):
        raise ConfigError(
            f"{_key_path(parts)}: the value looks like an API key; export it and name the environment "
            f"variable instead (api_key_env)"
        )


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Check ``config`` against the JSON schema; raise ConfigError naming the bad key.

    Typos in plugin names get a "did you mean" from the schema's enum.
    """
    import jsonschema

    # libyaml's loader when PyYAML has it: the schema is read on every DAG build.
    schema = yaml.load(Path(schema_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: (len(e.path), list(map(str, e.path))))
    if not errors:
        return
    err = errors[0]
    where = _key_path(err.absolute_path)
    msg = err.message
    if err.validator == "enum" and isinstance(err.instance, str):
        hint = difflib.get_close_matches(err.instance, [str(v) for v in err.validator_value], n=1)
        known = ", ".join(map(str, err.validator_value))
        msg = f"unknown value {err.instance!r}" + (f"; did you mean {hint[0]!r}?" if hint else "")
        msg += f" (known: {known})"
    elif err.validator == "additionalProperties":
        allowed = sorted(err.schema.get("properties", {}))
        extra = [k for k in err.instance if k not in allowed]
        hints = [difflib.get_close_matches(k, allowed, n=1) for k in extra]
        msg = "unknown key " + ", ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(extra, hints)
        )
        msg += f"; allowed keys: {', '.join(allowed)}"
    elif err.validator == "contains":
        msg = f"must include {err.validator_value.get('const')!r} (got {err.instance})"
    elif err.validator == "pattern" or err.validator == "propertyNames":
        msg = f"{msg}: ids must be slugs (letters, digits, '-', '_'); put real names in values"
    more = f" ({len(errors) - 1} more problem(s) after this one)" if len(errors) > 1 else ""
    raise ConfigError(f"{where}: {msg}{more}")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the study. ``path`` is a hub id or a directory; built models live in resources/."""

    id: str
    backend: str
    path: str
    build: dict[str, Any] | None
    settings: dict[str, Any]
    generation: dict[str, Any]
    gpus: int | None = None
    trained: dict[str, Any] | None = None  # {"run", "seed", "step"} for a saved training step
    # The variants this model is evaluated on when not every one of the study's (a training run's
    # earlier steps with ``step_variants``); None: all of them.
    variants: tuple[str, ...] | None = None

    @property
    def built(self) -> bool:
        return self.build is not None


@dataclass
class Grid:
    """The study's axes and the per-rule slices of config."""

    models: dict[str, ModelSpec]
    benchmarks: dict[str, dict[str, Any]]
    variants: list[str]
    seeds: list[int]
    judges: dict[str, dict[str, Any]]
    training_data: dict[str, dict[str, Any]] = field(default_factory=dict)
    training_runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    judge_gpu_counts: dict[str, int] = field(default_factory=dict)
    analysis: dict[str, Any] = field(default_factory=dict)
    # analysis.judge and analysis.cross_check: which verdicts the figures draw and which judges the
    # agreement table compares (not part of the metrics' param: metrics cover every judge).
    primary_judge: str | None = None
    cross_check: list[str] | None = None
    # The optional LLM answer extractor's args (cotprobe.extractor); None: off, the default.
    extractor: dict[str, Any] | None = None
    _versions: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)
    _commits: dict[tuple[str, str | None], str | None] = field(default_factory=dict, repr=False)
    _judge_inputs: dict[str, list[str]] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: dict[str, Any], schema_path: str | Path | None = None) -> Grid:
        """Validate ``config`` (when a schema is given) and build the grid."""
        check_no_secrets(config)
        if schema_path is not None:
            validate_config(config, schema_path)
        defaults = Generation.sampling_defaults()
        shared_gen = {**defaults, **config.get("generation", {})}
        models = {}
        for mid, m in config["models"].items():
            build = m.get("build")
            if build is None and "path" not in m:
                raise ConfigError(f"config.models.{mid}: needs `path` (hub id or directory) or `build`")
            if build is not None and "path" in m:
                raise ConfigError(
                    f"config.models.{mid}: set either `path` or `build`, not both "
                    f"(built models live in {BUILT_MODEL.format(model=mid)})"
                )
            # `letters` has no default here: a study that does not set it keeps its specs (no rerun).
            allowed = {*defaults, "letters"}
            letters = {**shared_gen, **m.get("generation", {})}.get("letters", "options")
            if letters not in Generation.LETTERS:
                raise ConfigError(
                    f"config.models.{mid}.generation.letters: {letters!r} is not options or fixed"
                )
            unknown = set(m.get("generation", {})) - allowed
            if unknown:
                raise ConfigError(
                    f"config.models.{mid}.generation: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
                )
            models[mid] = ModelSpec(
                id=mid,
                backend=m["backend"],
                path=m.get("path") or BUILT_MODEL.format(model=mid),
                build={"seed": 0, **build} if build is not None else None,
                settings=dict(m.get("settings", {})),
                # `letters: options` is the unset default: the same spec, so nothing reruns.
                generation={
                    k: v
                    for k, v in {**shared_gen, **m.get("generation", {})}.items()
                    if (k, v) != ("letters", "options")
                },
                gpus=m.get("gpus"),
            )
        benchmarks = {
            b: {"kind": v["kind"], "args": dict(v.get("args", {}))} for b, v in config["benchmarks"].items()
        }
        judges, judge_gpus = _judges(config["judges"], models)
        analysis = dict(config.get("analysis") or {})
        primary, cross = analysis.pop("judge", None), analysis.pop("cross_check", None)
        for key, named in (("judge", [primary] if primary else []), ("cross_check", cross or [])):
            unknown = [j for j in named if j not in judges]
            if unknown:
                raise ConfigError(
                    f"config.analysis.{key}: {unknown[0]!r} is not a judge of this study (judges: {', '.join(judges)})"
                )
        training = config.get("training") or {}
        training_data = {
            d: {"kind": v["kind"], "args": dict(v.get("args", {}))}
            for d, v in training.get("data", {}).items()
        }
        runs = {
            rid: _training_run(rid, r, models, training_data, list(config["variants"]))
            for rid, r in training.get("runs", {}).items()
        }
        return cls(
            models=models,
            benchmarks=benchmarks,
            variants=list(config["variants"]),
            seeds=[int(s) for s in config.get("seeds", [0])],
            judges=judges,
            training_data=training_data,
            training_runs=runs,
            judge_gpu_counts=judge_gpus,
            analysis=_analysis(analysis, models),
            primary_judge=primary,
            cross_check=list(cross) if cross is not None else None,
            extractor=dict(config["extractor"]) if config.get("extractor") else None,
        )

    def check_plugins(self) -> None:
        """Construct every benchmark and judge plugin once, so a bad arg fails before any job runs.

        Constructors only validate their arguments (no data, no model): cheap at DAG-build time.
        """
        from cotprobe.backends import BACKENDS
        from cotprobe.backends.base import check_settings
        from cotprobe.backends.settings import SHARED_SETTINGS, check_model_settings
        from cotprobe.benchmarks import BENCHMARKS
        from cotprobe.judges import kind_class

        # Model settings are the backend constructor's keywords: a typo fails here, not in a job.
        settings = [
            (f"models.{mid}", m.backend, m.path, m.settings)
            for mid, m in self.models.items()
            if not m.trained
        ]
        settings += [(f"judges.{j}.args", v["args"].get("backend", "hf"), v["args"].get("path", ""),
                      v["args"].get("settings") or {})
                     for j, v in self.judges.items() if v["kind"] == "llm"]  # fmt: skip
        for where, backend, path, values in settings:
            try:
                check_settings(BACKENDS.get(backend), values)
                # The shared model settings' values too (a revision for a local directory, ...).
                shared = {k: v for k, v in values.items() if k in SHARED_SETTINGS}
                if shared and backend in ("hf", "vllm"):
                    check_model_settings(str(path), **shared)
            except ValueError as err:
                raise ConfigError(f"config.{where}.settings: {err}") from None
        for section, table, plugin in (
            ("benchmarks", self.benchmarks, BENCHMARKS.get),
            ("training.data", self.training_data, BENCHMARKS.get),
            ("judges", self.judges, kind_class),
        ):
            for pid, spec in table.items():
                try:
                    plugin(spec["kind"])(**spec["args"])
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"config.{section}.{pid}.args: {err}") from None
        if self.extractor is not None:
            from cotprobe.extractor import Extractor

            try:
                Extractor(**self.extractor)
            except ValueError as err:
                raise ConfigError(f"config.extractor: {err}") from None

    # ---- plugin versions (cheap: plugin modules import torch lazily) ----
    def _version(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._versions:
            self._versions[key] = int(_plugin_class(kind, name).version)
        return self._versions[key]

    def _plugin_params(self, kind: str, spec: dict[str, Any], extras: dict | None = None) -> PluginParams:
        """A plugin slice (``kind``, ``args``) with its plugin's version, and ``extras`` after it."""
        return PluginParams(spec["kind"], spec["args"], self._version(kind, spec["kind"]), extras or {})

    # ---- per-rule params: only the rule's own slice of config plus its plugin's version ----
    def bench_spec(self, bench: str) -> dict[str, Any]:
        return self._plugin_params("benchmark", self.benchmarks[bench]).as_param()

    def variant_spec(self, variant: str) -> dict[str, Any]:
        return {"name": variant, "version": self._version("variant", variant)}

    def model_params(self, model: str) -> dict[str, Any]:
        """The generation rules' ``spec`` param of ``model`` (JSON-ready; not the ``ModelSpec`` itself):
        the model's slice of config and its backend's version; for a hub id, also the commit its
        ``revision`` (default ``main``) resolves to in the local hub cache, so a new upstream commit,
        once downloaded, reruns that model's cells (and a local or uncached model's param is as before).
        """
        m = self.models[model]
        commit = None if m.built or m.trained else self._commit(m.path, m.settings.get("revision"))
        return ModelParams(
            backend=m.backend,
            path=m.path,
            settings=m.settings,
            generation=m.generation,
            version=self._version("backend", m.backend),
            commit=commit,
        ).as_param()

    def _commit(self, path: str, revision: str | None) -> str | None:
        """``hub_commit`` once per (path, revision) per DAG build (read from the cache, offline)."""
        from cotprobe.backends.settings import hub_commit

        key = (path, revision)
        if key not in self._commits:
            self._commits[key] = hub_commit(path, revision)
        return self._commits[key]

    def build_spec(self, model: str) -> dict[str, Any]:
        """A built model's ``build`` config and the versions its builder (``build.kind``) records."""
        from cotprobe.models import BUILDERS

        build = self.models[model].build
        return {**build, **BUILDERS.get(build["kind"]).versions(build)}

    def training_data_spec(self, data: str) -> dict[str, Any]:
        return self._plugin_params("benchmark", self.training_data[data]).as_param()

    def train_spec(self, run: str) -> dict[str, Any]:
        """A run's slice of config, without its seeds (a wildcard: adding a seed reruns nothing)."""
        from cotprobe.training import TRAINERS
        from cotprobe.training.augment import AUGMENT_VERSION
        from cotprobe.training.reward import REWARD_VERSION

        # Not what is trained: the seeds (a wildcard), the saved steps, GPUs, what the steps are evaluated on.
        skip = ("seeds", "steps", "gpus", "step_variants")
        spec = {k: v for k, v in self.training_runs[run].items() if k not in skip}
        # The reward reads the answer letter with the parser: a parser change changes the rewards.
        version = {"reward": REWARD_VERSION, "augment": AUGMENT_VERSION, "parser": PARSER_VERSION}
        version[spec["backend"]] = TRAINERS.version(spec["backend"])
        return {**spec, "version": version}

    def trainer(self, run: str):
        """The run's trainer (``cotprobe.training.Trainer``): what its training jobs run."""
        from cotprobe.training import TRAINERS

        return TRAINERS.get(self.training_runs[run]["backend"])

    def trainer_runs(self, trainer: str) -> list[str]:
        """The runs that ``trainer`` trains."""
        return [r for r, spec in self.training_runs.items() if spec["backend"] == trainer]

    def train_base(self, run: str) -> str:
        """Where the run's base model loads from (a built dir or a hub id)."""
        return self.models[self.training_runs[run]["base"]].path

    def train_inputs(self, run: str) -> dict[str, Any]:
        """The run's base model (when the workflow builds it) and training samples."""
        r = self.training_runs[run]
        return {
            "base": self.model_inputs(r["base"]),
            "samples": [TRAINING_DATA.format(data=d) for d in r["data"]],
        }

    def train_job_inputs(self, run: str, seed: int | str) -> dict[str, Any]:
        """A training job's inputs: what its trainer's preparation wrote, else the base and samples."""
        prepared = self.trainer(run).prepared
        if prepared:
            return {k: p.format(run=run, seed=seed) for k, p in prepared.items()}
        return self.train_inputs(run)

    def train_samples_option(self, run: str) -> str:
        """``--samples DATA=PATH`` for each training set of the run, in config order."""
        r = self.training_runs[run]
        return " ".join(f"--samples {d}={TRAINING_DATA.format(data=d)}" for d in r["data"])

    def train_gpus(self, run: str) -> int:
        r = self.training_runs[run]
        return int(r["gpus"]) if r.get("gpus") is not None else self.model_gpus(r["base"])

    def trained_outputs(self, run: str) -> list[str]:
        """The step dirs of one run, with ``{run}`` and ``{seed}`` left as the job's wildcards."""
        return [TRAINED.format(run="{run}", seed="{seed}", step=n) for n in self.training_runs[run]["steps"]]

    def training_axes(self) -> dict[str, Any]:
        """run -> base model and every (seed, step, model id), for the training-curves rule."""
        return {
            run: {
                "base": r["base"],
                "models": [
                    {"seed": m.trained["seed"], "step": m.trained["step"], "model": mid}
                    for mid, m in self.models.items()
                    if m.trained and m.trained["run"] == run
                ],
            }
            for run, r in self.training_runs.items()
        }

    def training_parsed_axes(self) -> dict[str, Any]:
        """The evaluation axes whose parsed thinks the training diagnostics read (``only``: see ``axes``)."""
        axes = {
            "benchmarks": list(self.benchmarks),
            "variants": list(self.variants),
            "seeds": list(self.seeds),
        }
        only = self._only()
        return {**axes, "only": only} if only else axes

    def training_parsed(self) -> list[str]:
        """The parsed files of every training point (each saved step and each run's base model)."""
        models = {
            m
            for axes in self.training_axes().values()
            for m in (axes["base"], *(x["model"] for x in axes["models"]))
        }
        return [
            PARSED.format(model=m, bench=b, variant=v, seed=s)
            for m in sorted(models)
            for b in self.benchmarks
            for v in self.model_variants(m)
            for s in self.seeds
        ]

    def extractor_spec(self) -> dict[str, Any] | None:
        """The parse rule's extractor param (``Extractor.spec``): None when the extractor is off, so
        turning it on or changing it re-parses (and what reads the parsed files), never regenerates."""
        if self.extractor is None:
            return None
        from cotprobe.extractor import Extractor

        return Extractor.spec(self.extractor)

    def judge_spec(self, judge: str) -> dict[str, Any]:
        """The judge's config, its plugin version and what else identifies its verdicts.

        An LLM judge adds its prompt template's hash and its backend's version, so editing the
        template reruns only its cells.
        """
        from cotprobe.judges import kind_class

        spec = self.judges[judge]
        spec_extras = getattr(kind_class(spec["kind"]), "spec_extras", None)
        extras = spec_extras(spec["args"]) if spec_extras else {}
        # A hub model's commit, as for model_params: a new upstream commit reruns the judge's cells.
        path = spec["args"].get("path")
        commit = self._commit(path, (spec["args"].get("settings") or {}).get("revision")) if path else None
        if commit:
            extras = {**extras, "commit": commit}
        return self._plugin_params("judge", spec, extras).as_param()

    # ---- judges: those that read generations, and ensembles that combine them ----
    @property
    def base_judges(self) -> list[str]:
        return [j for j, spec in self.judges.items() if spec["kind"] != ENSEMBLE]

    @property
    def ensemble_judges(self) -> list[str]:
        return [j for j, spec in self.judges.items() if spec["kind"] == ENSEMBLE]

    def ensemble_members(self, judge: str) -> list[str]:
        return list(self.judges[judge]["args"]["judges"])

    def ensemble_inputs(self, judge: str, model: str, bench: str, variant: str, seed: int | str) -> list[str]:
        """The member verdict files of one ensemble cell, in member order."""
        cell = {"model": model, "bench": bench, "variant": variant, "seed": seed}
        return [VERDICTS.format(judge=m, **cell) for m in self.ensemble_members(judge)]

    @property
    def figure_judge(self) -> str:
        """The judge the figures and training curves draw: ``analysis.judge``, else the first judge
        the config lists. Never chosen by how many judges there are, so adding a judge (or the
        ensembles two judges bring) does not change the figures."""
        return self.primary_judge or next(iter(self.judges))

    @property
    def agreement_judges(self) -> list[str]:
        """Judges compared in the agreement table: ``analysis.cross_check``, else the figure
        ensemble's members, else every judge that reads generations; empty when fewer than two."""
        if self.cross_check is not None:
            judges = list(self.cross_check)
        else:
            judge = self.figure_judge
            judges = self.ensemble_members(judge) if judge in self.ensemble_judges else self.base_judges
        return judges if len(judges) >= 2 else []

    def judge_inputs(self, judge: str) -> list[str]:
        """Files a judge's cells depend on besides the cell: a model built by the workflow."""
        if judge not in self._judge_inputs:  # asked once per judge job at DAG-build time
            path = self.judges[judge]["args"].get("path")
            built = {BUILT_MODEL.format(model=m) for m in self.built_model_ids}
            self._judge_inputs[judge] = [path] if path in built else []
        return list(self._judge_inputs[judge])

    def judge_backend(self, judge: str) -> str:
        """The backend a judge's cells load: an LLM judge's ``backend``; ``hf`` (the evaluation
        env, no model) for the rule judge and ensembles. It picks the judge rule's conda env."""
        spec = self.judges[judge]
        return spec.get("args", {}).get("backend", "hf") if spec["kind"] == "llm" else "hf"

    def backend_env(self, backend: str) -> str:
        """The conda env (``envs/<env>.yaml``) of jobs that load a model with ``backend``."""
        return _plugin_class("backend", backend).env

    def judge_gpus(self, judge: str) -> int:
        """GPUs one judge job requests (a scheduling resource, not part of the params)."""
        return self.judge_gpu_counts.get(judge, 0)

    def axes(self) -> dict[str, Any]:
        """The grid's axes, for the aggregate rules (which rebuild paths from the grammar).

        ``only`` (present only when some model is evaluated on a subset of the variants) maps such a
        model to its variants; the entry functions below leave its other cells out.
        """
        axes = {
            "models": list(self.models),
            "benchmarks": list(self.benchmarks),
            "variants": self.variants,
            "seeds": self.seeds,
            "judges": list(self.judges),
        }
        only = self._only()
        return {**axes, "only": only} if only else axes

    def _only(self) -> dict[str, list[str]]:
        """Models evaluated on a subset of the variants -> that subset."""
        return {m: list(spec.variants) for m, spec in self.models.items() if spec.variants is not None}

    @property
    def full_models(self) -> list[str]:
        """Models evaluated on every variant (not a run's earlier ``step_variants`` steps)."""
        return [m for m, spec in self.models.items() if spec.variants is None]

    def model_variants(self, model: str) -> list[str]:
        """The variants ``model`` is evaluated on, in the study's order."""
        subset = self.models[model].variants
        return list(self.variants) if subset is None else list(subset)

    # ---- inputs and targets ----
    @property
    def built_model_ids(self) -> list[str]:
        return [m for m, spec in self.models.items() if spec.built]

    def model_gpus(self, model: str) -> int:
        """GPUs a generation job of ``model`` requests (a resource, not part of the params)."""
        m = self.models[model]
        if m.gpus is not None:
            return int(m.gpus)
        if m.built:
            return 0
        if m.backend == "vllm":  # tensor parallelism shards the model over this many GPUs
            return int(m.settings.get("tensor_parallel_size", 1))
        return 1

    def model_inputs(self, model: str) -> list[str]:
        """Files the generation of ``model`` depends on: the built or trained model dir, or nothing (hub)."""
        m = self.models[model]
        if m.trained:
            return [m.path]
        return [BUILT_MODEL.format(model=model)] if m.built else []

    def cells(self):
        """Every cell the study evaluates: (model, bench, variant, seed). A judge's verdicts are per cell, not part of it."""
        return (
            (m, b, v, s)
            for m in self.models
            for b, v, s in product(self.benchmarks, self.model_variants(m), self.seeds)
        )

    def verdict_files(self) -> list[str]:
        return [
            VERDICTS.format(judge=j, model=m, bench=b, variant=v, seed=s)
            for j in self.judges
            for m, b, v, s in self.cells()
        ]

    def parsed_files(self) -> list[str]:
        return [PARSED.format(model=m, bench=b, variant=v, seed=s) for m, b, v, s in self.cells()]

    def logit_files(self) -> list[str]:
        return [LOGITS.format(model=m, bench=b, variant=v, seed=s) for m, b, v, s in self.cells()]

    @property
    def text_variants(self) -> list[str]:
        """The textual variants (the paper's suite), in config order: rule ``perturb_prompts``."""
        from cotprobe.variants import is_image_variant

        return [v for v in self.variants if not is_image_variant(v)]

    @property
    def image_variants(self) -> list[str]:
        """The image variants, in config order: rule ``perturb_images``."""
        from cotprobe.variants import is_image_variant

        return [v for v in self.variants if is_image_variant(v)]

    def perturb_reports(self) -> list[str]:
        """The image cells' perturb reports (the ``image_skips`` table's inputs)."""
        return [
            PERTURB_REPORT.format(bench=b, variant=v, seed=s)
            for b, v, s in product(self.benchmarks, self.image_variants, self.seeds)
        ]

    def prompt_files(self) -> list[str]:
        return [
            PROMPTS.format(bench=b, variant=v, seed=s)
            for b, v, s in product(self.benchmarks, self.variants, self.seeds)
        ]

    def metric_inputs(self) -> list[str]:
        return self.prompt_files() + self.parsed_files() + self.logit_files() + self.verdict_files()

    def sample_inputs(self) -> list[str]:
        """The sample browser's inputs: the metrics' and the generations."""
        gens = [GENERATIONS.format(model=m, bench=b, variant=v, seed=s) for m, b, v, s in self.cells()]
        return self.metric_inputs() + gens

    def agreement_inputs(self) -> list[str]:
        judges = self.agreement_judges
        return [
            VERDICTS.format(judge=j, model=m, bench=b, variant=v, seed=s)
            for j in judges
            for m, b, v, s in self.cells()
        ]

    # ---- does the think admit the plant? ----
    @property
    def ack_variants(self) -> list[str]:
        """The planted variants of the grid (``acknowledgment.ACK_VARIANTS``); none without ``base``."""
        from cotprobe.acknowledgment import ACK_VARIANTS, BASE

        return [v for v in self.variants if v in ACK_VARIANTS] if BASE in self.variants else []

    @property
    def ack_judges(self) -> list[str]:
        """Judges that read acknowledgments: the rule and LLM judges (ensembles combine verdicts only)."""
        from cotprobe.acknowledgment import JUDGE_KINDS

        return [j for j in self.base_judges if self.judges[j]["kind"] in JUDGE_KINDS]

    def ack_spec(self, judge: str) -> dict[str, Any]:
        """What identifies a judge's acknowledgment rows: the rule's version alone (its other args
        are about consistency), or an LLM judge's model, settings and sampling (not its consistency
        template) with the acknowledgment template's hash."""
        from cotprobe.acknowledgment import spec_extras

        kind = self.judges[judge]["kind"]
        if kind == "rule":
            return {"kind": kind, **spec_extras(kind)}
        spec = {k: v for k, v in self.judge_spec(judge).items() if k not in ("prompt_sha256", "version")}
        spec["args"] = {k: v for k, v in spec["args"].items() if k != "prompt"}
        return {**spec, **spec_extras(kind)}

    def ack_axes(self) -> dict[str, Any]:
        """The acknowledgment table's axes: the planted variants, the judges that read them, and the
        fully evaluated models (a training run's earlier ``step_variants`` steps are curve points)."""
        axes = {k: v for k, v in self.axes().items() if k != "only"}
        return {**axes, "models": self.full_models, "variants": self.ack_variants, "judges": self.ack_judges}

    def ack_files(self) -> list[str]:
        return [e["path"] for e in ack_entries(self.ack_axes())]

    # ---- early answering ----
    def early_axes(self) -> dict[str, Any]:
        """Early answering reads every fully evaluated model's base thinks (not a run's earlier steps)."""
        return {"models": self.full_models, "benchmarks": list(self.benchmarks), "seeds": self.seeds}

    def early_files(self) -> list[str]:
        return [e["path"] for e in early_entries(self.early_axes())] if "base" in self.variants else []

    def final_targets(self) -> list[str]:
        training = [TRAINING_CURVES, *TRAINING_FIGURES] if self.training_runs else []
        agreement = [AGREEMENT, *AGREEMENT_FIGURES] if self.agreement_judges else []
        ack = [ACK_TABLE, *ACK_FIGURES] if self.ack_variants and self.ack_judges else []
        early = [EARLY_TABLE, *EARLY_FIGURES] if self.early_files() else []
        images = [IMAGE_SKIPS] if self.image_variants else []
        extras = [*training, *agreement, *ack, *early, *images]
        return [*METRICS, *FIGURES, *TABLES, SAMPLE_TABLE, SAMPLE_BROWSER, *extras]

    def table_inputs(self) -> dict[str, str]:
        """The tables rule's inputs: the metric tables, and the agreement table when there is one."""
        inputs = {name: f"results/metrics/{name}.csv" for name in ("cells", "summary", "effects", "auroc")}
        if self.agreement_judges:
            inputs["agreement"] = AGREEMENT
        return inputs

    @property
    def table_agreement_option(self) -> str:
        """``--agreement <csv>`` for the tables verb when there is an agreement table, else ``""``."""
        return f"--agreement {AGREEMENT}" if self.agreement_judges else ""


def _plugin_class(kind: str, name: str) -> type:
    """The plugin class of a ``benchmark``, ``variant``, ``backend`` or ``judge`` (kind) by name."""
    if kind == "benchmark":
        from cotprobe.benchmarks import BENCHMARKS

        return BENCHMARKS.get(name)
    if kind == "variant":
        from cotprobe.variants import VARIANTS

        return VARIANTS.get(name)
    if kind == "backend":
        from cotprobe.backends import BACKENDS

        return BACKENDS.get(name)
    from cotprobe.judges import kind_class

    return kind_class(name)


def _analysis(analysis: dict[str, Any], models: dict[str, ModelSpec] | None = None) -> dict[str, Any]:
    """The ``analysis`` slice with its defaults (the aggregate rules' param: a change reruns only them),
    plus the models whose pre-fills are delivered as a user instruction (``prefill_mode: fallback``),
    which the metrics keep out of the pre-fill comparisons."""
    boot = {**asdict(Bootstrap()), **(analysis.get("bootstrap") or {})}
    out = {"bootstrap": boot, "max_unparsed": float(analysis.get("max_unparsed", MAX_UNPARSED))}
    by_instruction = [
        m for m, spec in (models or {}).items() if spec.settings.get("prefill_mode") == "fallback"
    ]
    return {**out, "prefill_by_instruction": by_instruction} if by_instruction else out


def _training_run(
    rid: str, r: dict[str, Any], models: dict[str, ModelSpec], data: dict[str, Any], variants: list[str]
) -> dict[str, Any]:
    """Check one training run and add a model per saved step of each seed to ``models``.

    With ``step_variants`` every saved step but the last is evaluated on those variants only (the
    curves' points cost a fraction of the full suite); the last step gets the full suite.
    """
    from cotprobe.training import saved_steps

    where = f"config.training.runs.{rid}"
    base = models.get(r["base"])
    if base is None or base.trained:
        raise ConfigError(f"{where}.base: {r['base']!r} is not a model id (known: {', '.join(models)})")
    if base.backend != "hf":
        raise ConfigError(
            f"{where}.base: model {r['base']!r} runs on backend {base.backend!r}; training needs hf"
        )
    missing = [d for d in r["data"] if d not in data]
    if missing:
        raise ConfigError(
            f"{where}.data: {missing[0]!r} is not in config.training.data (known: {', '.join(data)})"
        )
    steps = saved_steps(int(r["total_steps"]), int(r["save_every"]))
    subset = None
    if r.get("step_variants") is not None:
        unknown = [v for v in r["step_variants"] if v not in variants]
        if unknown:
            raise ConfigError(
                f"{where}.step_variants: {unknown[0]!r} is not a variant of this study (variants: {', '.join(variants)})"
            )
        if BASE_VARIANT in variants and BASE_VARIANT not in r["step_variants"]:
            raise ConfigError(
                f"{where}.step_variants: needs {BASE_VARIANT!r} (effects are measured against it)"
            )
        # In the study's order, so the steps' cells and tables list variants as every other model's.
        subset = tuple(v for v in variants if v in r["step_variants"])
    eval_gpus = base.gpus if base.gpus is not None else (0 if base.built else 1)
    for seed in r["seeds"]:
        for step in steps:
            mid = TRAINED_MODEL_ID.format(run=rid, seed=seed, step=step)
            if mid in models:
                raise ConfigError(f"{where}: its step model id {mid!r} clashes with another model id")
            models[mid] = ModelSpec(
                id=mid,
                backend=base.backend,
                path=TRAINED.format(run=rid, seed=seed, step=step),
                build=None,
                settings=base.settings,
                generation=base.generation,
                gpus=eval_gpus,
                trained={"run": rid, "seed": int(seed), "step": step},
                variants=subset if subset is not None and step != steps[-1] else None,
            )
    return {**r, "steps": steps}


def _judges(config: dict[str, Any], models: dict[str, ModelSpec]) -> tuple[dict[str, Any], dict[str, int]]:
    """Judge slices (``kind``, ``args``), plus ensembles of several judges, and GPUs per judge.

    Ensembles get their member list resolved (default: every judge that reads generations) so
    that the param names it. With two or more such judges and no ensemble configured, the
    ``AUTO_ENSEMBLES`` are added over all of them.
    """
    judges = {j: {"kind": v["kind"], "args": dict(v.get("args", {}))} for j, v in config.items()}
    base = [j for j, v in judges.items() if v["kind"] != ENSEMBLE]
    ensembles = [j for j, v in judges.items() if v["kind"] == ENSEMBLE]
    if not ensembles and len(base) >= 2:
        taken = sorted(set(AUTO_ENSEMBLES) & set(judges))
        if taken:
            raise ConfigError(
                f"config.judges.{taken[0]}: this id names the automatic ensemble; configure "
                f"an ensemble explicitly (kind: ensemble) or rename the judge"
            )
        for j, rule in AUTO_ENSEMBLES.items():
            judges[j] = {"kind": ENSEMBLE, "args": {"judges": list(base), "rule": rule}}
            ensembles.append(j)
    for j in ensembles:
        args = judges[j]["args"]
        args.setdefault("judges", list(base))
        args.setdefault("rule", "majority")
        for m in args["judges"] if isinstance(args["judges"], list) else []:
            if m not in base:
                what = "an ensemble" if m in judges else "not a judge of this study"
                raise ConfigError(
                    f"config.judges.{j}.args.judges: {m!r} is {what} (members: {', '.join(base)})"
                )
    gpus = {}
    built_paths = {BUILT_MODEL.format(model=m) for m, spec in models.items() if spec.built}
    for j, v in config.items():
        if "gpus" in v:
            gpus[j] = int(v["gpus"])
        elif v["kind"] == "llm":  # a local model needs a GPU unless the workflow built it (tiny)
            local = v.get("args", {}).get("backend", "hf") != "openai"
            gpus[j] = int(local and v.get("args", {}).get("path") not in built_paths)
    return judges, gpus


def cell_entries(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of every (cell, judge) pair (a cell: model, bench, variant, seed), from the path grammar."""
    entries = []
    only = axes.get("only") or {}
    for judge, model, bench, variant, seed in product(
        axes["judges"], axes["models"], axes["benchmarks"], axes["variants"], axes["seeds"]
    ):
        if model in only and variant not in only[model]:
            continue
        cell = {"model": model, "bench": bench, "variant": variant, "seed": seed}
        entries.append(
            {
                **cell,
                "judge": judge,
                "prompts": PROMPTS.format(**cell),
                "parsed": PARSED.format(**cell),
                "logits": LOGITS.format(**cell),
                "verdicts": VERDICTS.format(judge=judge, **cell),
            }
        )
    return entries


def ack_entries(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """The acknowledgment file of every (judge, model, bench, planted variant, seed), from the path grammar."""
    return [
        {"model": m, "bench": b, "variant": v, "seed": s, "judge": j,
         "path": ACKNOWLEDGMENT.format(judge=j, model=m, bench=b, variant=v, seed=s)}
        for j, m, b, v, s in product(axes["judges"], axes["models"], axes["benchmarks"], axes["variants"], axes["seeds"])
    ]  # fmt: skip


def early_entries(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """The early-answer file of every (model, bench, seed), from the path grammar."""
    return [
        {"model": m, "bench": b, "seed": s, "path": EARLY_ANSWER.format(model=m, bench=b, seed=s)}
        for m, b, s in product(axes["models"], axes["benchmarks"], axes["seeds"])
    ]


def as_json(obj: Any) -> str:
    """Canonical JSON for params (sorted keys: equal slices compare equal)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def export_run_id(*, main_process: bool = True) -> str:
    """Give this Snakemake run an id that its jobs inherit (``COTPROBE_RUN_ID``) and return it.

    A shared model server a cell starts records it, and the run's end stops only the idle servers
    that carry it. The main Snakemake process draws a new id (even when started from a job of
    another run); a job's process (a SLURM job re-parses the Snakefile) keeps the one it inherited.
    The id is the run's identity, not study config: it changes no output.
    """
    if main_process or not os.environ.get("COTPROBE_RUN_ID"):
        os.environ["COTPROBE_RUN_ID"] = f"{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    return os.environ["COTPROBE_RUN_ID"]
