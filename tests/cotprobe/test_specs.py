"""Typed config slices: their defaults (the schema's), the model and plugin params as finished studies
recorded them, and the model_server settings' way into a job (its command line)."""

from __future__ import annotations

import shlex
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from cotprobe.io import InputError
from cotprobe.specs import MAX_UNPARSED, Bootstrap, Generation, ModelParams, PluginParams, ServerSettings
from cotprobe.workflow import Grid, as_json

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"


def _props(*path: str) -> dict:
    node = yaml.safe_load(SCHEMA.read_text())
    for key in path:
        node = node["properties"][key]
    return node["properties"]


def test_generation_and_analysis_defaults_are_the_schemas():
    props = _props("generation")
    assert set(props) == set(asdict(Generation()))
    assert Generation.sampling_defaults() == {k: p["default"] for k, p in props.items() if k != "letters"}
    # `letters` has no default in the schema: unset, it is never written into a param.
    assert "default" not in props["letters"] and tuple(props["letters"]["enum"]) == Generation.LETTERS
    assert Generation().letters == Generation.LETTERS[0]
    boot = _props("analysis", "bootstrap")
    assert asdict(Bootstrap()) == {k: p["default"] for k, p in boot.items()}
    assert Bootstrap.from_config({}) == Bootstrap() == Bootstrap.from_config({"bootstrap": None})
    assert Bootstrap.from_config({"bootstrap": {"n": 300}}) == Bootstrap(n=300)
    assert _props("analysis")["max_unparsed"]["default"] == MAX_UNPARSED


def test_the_model_param_keeps_what_finished_studies_recorded():
    config = {
        "models": {
            "hub": {"backend": "openai", "path": "org/m", "settings": {"base_url": "http://x"}},
            "own": {"backend": "hf", "path": "/m", "generation": {"letters": "fixed", "batch_size": 4}},
        },
        "generation": {"max_new_tokens": 64},
        "benchmarks": {"b": {"kind": "geometry3k"}},
        "variants": ["base"],
        "judges": {"rule": {"kind": "rule"}},
    }
    grid = Grid.from_config(config)
    hub = grid.model_params("hub")
    # The literal (key order included) is the JSON that Snakemake recorded as the generation rules' param.
    assert list(hub) == ["backend", "path", "settings", "generation", "version"]
    assert hub["generation"] == {"max_new_tokens": 64, "temperature": 0.0, "top_p": 1.0, "batch_size": 16}
    own = ModelParams.from_param(grid.model_params("own"))
    assert own.letters == "fixed" and own.sampling["batch_size"] == 4 and "letters" not in own.sampling
    assert own.as_param() == grid.model_params("own")
    assert ModelParams.from_param(hub).letters == "options"
    pinned = ModelParams(backend="hf", path="org/m", settings={}, generation={}, version=3, commit="abc")
    assert list(pinned.as_param())[-1] == "commit" and ModelParams.from_param(pinned.as_param()) == pinned
    with pytest.raises(ValueError, match=r"model spec: missing key\(s\) \['generation'\]"):
        ModelParams.from_param({"backend": "hf", "path": "/m"})


def test_the_plugin_param_round_trips_in_its_recorded_key_order():
    judge = PluginParams(
        "llm", {"path": "org/m"}, 2, {"prompt_sha256": "ab", "backend_version": 2, "commit": "c"}
    )
    param = judge.as_param()
    assert list(param) == ["kind", "args", "version", "prompt_sha256", "backend_version", "commit"]
    assert PluginParams.from_param(param) == judge and PluginParams.from_param(param).as_param() == param
    # A spec written by hand for a cell started by hand: only the kind is needed.
    rule = PluginParams.from_param({"kind": "rule"})
    assert rule == PluginParams("rule") and rule.as_param() == {"kind": "rule", "args": {}}
    with pytest.raises(ValueError, match=r"plugin spec: missing key 'kind' \(got \['args', 'version'\]\)"):
        PluginParams.from_param({"args": {}, "version": 1})
    with pytest.raises(ValueError, match=r"extras \['version'\] would replace"):
        PluginParams("rule", extras={"version": 2})
    # A stage names the flag: a bad --spec is the job's input error.
    from cotprobe.stages import parse_params

    with pytest.raises(InputError, match=r"^--spec: plugin spec: missing key 'kind'"):
        parse_params('{"args": {}}', PluginParams)
    with pytest.raises(InputError, match=r"^--spec: model spec: missing key\(s\) \['generation'\]"):
        parse_params('{"backend": "hf", "path": "/m"}', ModelParams)


@pytest.mark.parametrize(
    "configfile", ["config/config.yaml", "config/paper.yaml", "tests/workflow/config/config.yaml"]
)
def test_the_grids_plugin_params_are_their_typed_specs(configfile):
    """Every benchmark, training set and judge param reads back into the same JSON, key order included
    (the literal JSON of each was checked unchanged against the dicts the grid built before)."""
    grid = Grid.from_config(yaml.safe_load((ROOT / configfile).read_text()), SCHEMA)
    params = [grid.bench_spec(b) for b in grid.benchmarks]
    params += [grid.training_data_spec(d) for d in grid.training_data]
    params += [grid.judge_spec(j) for j in grid.judges]
    for param in params:
        typed = PluginParams.from_param(param)
        assert typed.as_param() == param and list(typed.as_param()) == list(param)
        assert as_json(typed.as_param()) == as_json(param)
        assert list(param)[:3] == ["kind", "args", "version"]
    # The acknowledgment param has its own extras and no version; the stage reads its kind and args.
    for j in grid.ack_judges:
        ack = PluginParams.from_param(grid.ack_spec(j))
        assert ack.kind == grid.judges[j]["kind"] and ack.version is None


def test_an_llm_judges_param_ends_with_its_extras_and_a_hub_commit(monkeypatch):
    config = yaml.safe_load((ROOT / "tests/workflow/config/config.yaml").read_text())
    grid = Grid.from_config(config, SCHEMA)
    assert list(grid.judge_spec("tiny-llm")) == [*PluginParams.KEYS, "prompt_sha256", "backend_version"]
    monkeypatch.setattr(Grid, "_commit", lambda self, path, revision: "c0ffee")
    pinned = Grid.from_config(config, SCHEMA).judge_spec("tiny-llm")
    assert list(pinned)[-1] == "commit" and pinned["commit"] == "c0ffee"
    assert PluginParams.from_param(pinned).extras["commit"] == "c0ffee"


def test_an_llm_judges_load_is_its_models_load():
    """The judge asks for its model as ModelParams without generation; the load's identity is the one
    the judge's dict had, so it shares the server of the model's generation cells."""
    from cotprobe.serving.protocol import spec_key

    settings = {"device": "cpu"}
    load = ModelParams(backend="dummy", path="x", settings=settings, generation={}, version=1)
    assert spec_key(load.as_param()) == spec_key(
        {"backend": "dummy", "path": "x", "settings": settings, "version": 1}
    )
    cell = ModelParams(backend="dummy", path="x", settings=settings, generation={"batch_size": 4}, version=1)
    assert spec_key(cell.as_param()) == spec_key(load.as_param())
    assert ModelParams.from_param(load.as_param()) == load


def test_the_defaults_are_the_schemas():
    props = yaml.safe_load(SCHEMA.read_text())["properties"]["model_server"]["properties"]
    assert set(props) == set(ServerSettings.OPTIONS)
    default = ServerSettings()
    for name, prop in props.items():
        assert getattr(default, name) == prop["default"], name
    assert ServerSettings.from_config({}) == default


# A generate command line without the model_server options.
GENERATE = ["generate", "--model", "m", "--spec", "{}", "--prompts", "p", "--seed", "0", "--out", "o",
            "--logits-out", "l"]  # fmt: skip


def _parsed(settings: ServerSettings):
    from cotprobe.cli import build_parser

    args = build_parser().parse_args([*GENERATE, *shlex.split(settings.as_args())])
    return ServerSettings(
        share=args.share_load, idle_timeout=args.idle_timeout, load_timeout=args.server_wait
    )


@pytest.mark.parametrize(
    "section",
    [{}, {"share": False, "idle_timeout": 5, "load_timeout": 42}, {"share": True, "idle_timeout": 1.5}],
)
def test_a_runs_settings_reach_its_jobs_on_the_command_line(section):
    settings = ServerSettings.from_config({"model_server": section})
    assert _parsed(settings) == settings
    assert shlex.split(settings.as_args()) == settings.as_args().split()  # nothing to quote


def test_a_cell_outside_a_run_loads_its_model_itself():
    from cotprobe.cli import build_parser

    args = build_parser().parse_args(GENERATE)
    assert not args.share_load
    assert (args.idle_timeout, args.server_wait) == (
        ServerSettings().idle_timeout,
        ServerSettings().load_timeout,
    )
