"""Typed config slices: the model_server settings, their defaults (the schema's) and their way into a job."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cotprobe.specs import ServerSettings

SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"


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
