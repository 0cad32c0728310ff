"""Typed config slices: their defaults (the schema's), the model param as finished studies recorded it,
and the model_server settings' way into a job."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import pytest
import yaml

from cotprobe.specs import MAX_UNPARSED, Bootstrap, Generation, ModelParams, ServerSettings
from cotprobe.workflow import Grid

SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


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


def test_the_defaults_are_the_schemas():
    props = yaml.safe_load(SCHEMA.read_text())["properties"]["model_server"]["properties"]
    assert set(props) == set(ServerSettings.ENV)
    default = ServerSettings()
    for name, prop in props.items():
        assert getattr(default, name) == prop["default"], name
    assert ServerSettings.from_config({}) == default


def test_a_runs_settings_reach_its_jobs_through_the_environment():
    settings = ServerSettings.from_config(
        {"model_server": {"share": False, "idle_timeout": 5, "load_timeout": 42}}
    )
    assert settings == ServerSettings(share=False, idle_timeout=5.0, load_timeout=42.0)
    assert ServerSettings.from_env(settings.to_env()) == settings
    shared = ServerSettings(idle_timeout=1.5)
    assert ServerSettings.from_env(shared.to_env()) == shared


def test_a_cell_outside_a_run_loads_its_model_itself():
    assert ServerSettings.from_env({}) == ServerSettings(share=False)
    assert ServerSettings.from_env({"COTPROBE_SHARE_LOAD": "1", "COTPROBE_SERVER_IDLE": ""}).share


def test_a_bad_number_names_its_variable():
    with pytest.raises(ValueError, match=r"\$COTPROBE_SERVER_LOAD_TIMEOUT: not a number of seconds: 'ten'"):
        ServerSettings.from_env({"COTPROBE_SERVER_LOAD_TIMEOUT": "ten"})
