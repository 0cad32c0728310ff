"""The study grid as Snakemake sees it: config validation, path grammar, targets, rule params.

Imported by ``workflow/rules/common.smk`` while Snakemake builds the DAG, so it stays light:
no torch, no transformers. Every helper with a branch in it lives here (and is unit-tested)
rather than in the ``.smk`` files.

Path grammar (stage first, then the grid axes in a fixed order)::

    results/<stage>/[<judge>/][<model>/]<bench>/[<variant>/seed<seed>.<ext>]
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import yaml

SAMPLES = "results/data/{bench}/samples.jsonl"
PROMPTS = "results/prompts/{bench}/{variant}/seed{seed}.jsonl"
GENERATIONS = "results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl"
LOGITS = "results/logits/{model}/{bench}/{variant}/seed{seed}.parquet"
VERDICTS = "results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl"
BUILT_MODEL = "resources/models/{model}"
METRICS = ("results/metrics/cells.csv", "results/metrics/summary.csv", "results/metrics/auroc.csv")
FIGURE_NAMES = ("accuracy", "quadrants", "auroc")
FIGURES = tuple(f"results/figures/{name}.{ext}" for name in FIGURE_NAMES for ext in ("png", "pdf"))

# Version of the metrics/figures code (no plugin owns it); bump to recompute the aggregates.
METRICS_VERSION = 1
FIGURES_VERSION = 1


class ConfigError(ValueError):
    """An invalid study config; the message names the offending key."""


def _key_path(parts) -> str:
    out = "config"
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else f".{p}"
    return out


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """Check ``config`` against the JSON schema; raise ConfigError naming the bad key.

    Typos in plugin names get a "did you mean" from the schema's enum.
    """
    import jsonschema

    schema = yaml.safe_load(Path(schema_path).read_text())
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
    _versions: dict[tuple[str, str], int] = field(default_factory=dict, repr=False)

    @classmethod
    def from_config(cls, config: dict[str, Any], schema_path: str | Path | None = None) -> Grid:
        """Validate ``config`` (when a schema is given) and build the grid."""
        if schema_path is not None:
            validate_config(config, schema_path)
        defaults = {"max_new_tokens": 512, "temperature": 0.0, "top_p": 1.0, "batch_size": 16}
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
            unknown = set(m.get("generation", {})) - set(defaults)
            if unknown:
                raise ConfigError(
                    f"config.models.{mid}.generation: unknown key(s) {sorted(unknown)}; allowed: {sorted(defaults)}"
                )
            models[mid] = ModelSpec(
                id=mid,
                backend=m["backend"],
                path=m.get("path") or BUILT_MODEL.format(model=mid),
                build={"seed": 0, **build} if build is not None else None,
                settings=dict(m.get("settings", {})),
                generation={**shared_gen, **m.get("generation", {})},
                gpus=m.get("gpus"),
            )
        benchmarks = {
            b: {"kind": v["kind"], "args": dict(v.get("args", {}))} for b, v in config["benchmarks"].items()
        }
        judges = {
            j: {"kind": v["kind"], "args": dict(v.get("args", {}))} for j, v in config["judges"].items()
        }
        return cls(
            models=models,
            benchmarks=benchmarks,
            variants=list(config["variants"]),
            seeds=[int(s) for s in config.get("seeds", [0])],
            judges=judges,
        )

    def check_plugins(self) -> None:
        """Construct every benchmark and judge plugin once, so a bad arg fails before any job runs.

        Constructors only validate their arguments (no data, no model): cheap at DAG-build time.
        """
        from cotprobe.benchmarks import BENCHMARKS
        from cotprobe.judges import JUDGES

        for section, table, reg in (
            ("benchmarks", self.benchmarks, BENCHMARKS),
            ("judges", self.judges, JUDGES),
        ):
            for pid, spec in table.items():
                try:
                    reg.get(spec["kind"])(**spec["args"])
                except (TypeError, ValueError) as err:
                    raise ConfigError(f"config.{section}.{pid}.args: {err}") from None

    # ---- plugin versions (cheap: plugin modules import torch lazily) ----
    def _version(self, kind: str, name: str) -> int:
        key = (kind, name)
        if key not in self._versions:
            if kind == "benchmark":
                from cotprobe.benchmarks import BENCHMARKS as reg
            elif kind == "variant":
                from cotprobe.variants import VARIANTS as reg
            elif kind == "backend":
                from cotprobe.backends import BACKENDS as reg
            else:
                from cotprobe.judges import JUDGES as reg
            self._versions[key] = reg.version(name)
        return self._versions[key]

    # ---- per-rule params: only the rule's own slice of config plus its plugin's version ----
    def bench_spec(self, bench: str) -> dict[str, Any]:
        spec = self.benchmarks[bench]
        return {**spec, "version": self._version("benchmark", spec["kind"])}

    def variant_spec(self, variant: str) -> dict[str, Any]:
        return {"name": variant, "version": self._version("variant", variant)}

    def model_spec(self, model: str) -> dict[str, Any]:
        m = self.models[model]
        return {
            "backend": m.backend,
            "path": m.path,
            "settings": m.settings,
            "generation": m.generation,
            "version": self._version("backend", m.backend),
        }

    def build_spec(self, model: str) -> dict[str, Any]:
        from cotprobe.tiny_model import TINY_MODEL_VERSION

        spec = {**self.models[model].build, "version": TINY_MODEL_VERSION}
        if "warm_start" in spec:
            from cotprobe.organism import ORGANISM_VERSION

            spec["warm_start_version"] = ORGANISM_VERSION
        return spec

    def judge_spec(self, judge: str) -> dict[str, Any]:
        spec = self.judges[judge]
        return {**spec, "version": self._version("judge", spec["kind"])}

    def axes(self) -> dict[str, Any]:
        """The grid's axes, for the aggregate rules (which rebuild paths from the grammar)."""
        return {
            "models": list(self.models),
            "benchmarks": list(self.benchmarks),
            "variants": self.variants,
            "seeds": self.seeds,
            "judges": list(self.judges),
        }

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
        """Files the generation of ``model`` depends on: the built model dir, or nothing (hub)."""
        return [BUILT_MODEL.format(model=model)] if self.models[model].built else []

    def cells(self):
        """Every (model, bench, variant, seed)."""
        return product(self.models, self.benchmarks, self.variants, self.seeds)

    def verdict_files(self) -> list[str]:
        return [
            VERDICTS.format(judge=j, model=m, bench=b, variant=v, seed=s)
            for j in self.judges
            for m, b, v, s in self.cells()
        ]

    def generation_files(self) -> list[str]:
        return [GENERATIONS.format(model=m, bench=b, variant=v, seed=s) for m, b, v, s in self.cells()]

    def logit_files(self) -> list[str]:
        return [LOGITS.format(model=m, bench=b, variant=v, seed=s) for m, b, v, s in self.cells()]

    def prompt_files(self) -> list[str]:
        return [
            PROMPTS.format(bench=b, variant=v, seed=s)
            for b, v, s in product(self.benchmarks, self.variants, self.seeds)
        ]

    def metric_inputs(self) -> list[str]:
        return self.prompt_files() + self.generation_files() + self.logit_files() + self.verdict_files()

    def final_targets(self) -> list[str]:
        return [*METRICS, *FIGURES]


def cell_entries(axes: dict[str, Any]) -> list[dict[str, Any]]:
    """The files of every (model, bench, variant, seed, judge) cell, from the path grammar."""
    entries = []
    for judge, model, bench, variant, seed in product(
        axes["judges"], axes["models"], axes["benchmarks"], axes["variants"], axes["seeds"]
    ):
        cell = {"model": model, "bench": bench, "variant": variant, "seed": seed}
        entries.append(
            {
                **cell,
                "judge": judge,
                "prompts": PROMPTS.format(**cell),
                "generations": GENERATIONS.format(**cell),
                "logits": LOGITS.format(**cell),
                "verdicts": VERDICTS.format(judge=judge, **cell),
            }
        )
    return entries


def as_json(obj: Any) -> str:
    """Canonical JSON for params (sorted keys: equal slices compare equal)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))
