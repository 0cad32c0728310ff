"""The build-model verb: the builder its spec's kind names, or an error naming the known kinds."""

import json

from cotprobe import cli
from cotprobe.models import BUILDERS
from cotprobe.models.tiny import TINY_MODEL_VERSION, TinyBuilder


def test_builders_registry():
    assert BUILDERS.names() == ["tiny"] and BUILDERS.get("tiny") is TinyBuilder
    assert BUILDERS.version("tiny") == TINY_MODEL_VERSION


def test_unknown_kind_names_the_known_builders(tmp_path, capsys):
    spec = json.dumps({"kind": "tinny", "seed": 0})
    assert cli.main(["build-model", "--spec", spec, "--out", str(tmp_path / "m")]) != 0
    err = capsys.readouterr().err
    assert "unknown model builder 'tinny'" in err and "Did you mean 'tiny'?" in err and "Known: tiny" in err
    assert not (tmp_path / "m").exists()


def test_tiny_builds_the_random_model(tmp_path):
    spec = json.dumps({"kind": "tiny", "seed": 1, "version": TINY_MODEL_VERSION})
    assert cli.main(["build-model", "--spec", spec, "--out", str(tmp_path / "m"), "--threads", "1"]) == 0
    facts = json.loads((tmp_path / "m/cotprobe_model.json").read_text())
    assert facts["builder"] == "cotprobe.models.tiny.build_tiny_model" and facts["seed"] == 1
    assert (tmp_path / "m/model.safetensors").is_file()
