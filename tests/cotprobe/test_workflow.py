"""The grid: config validation, per-rule slices, targets; and that none of it imports torch."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cotprobe.workflow import BUILT_MODEL, ConfigError, Grid, cell_entries, validate_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def grid(config=None):
    return Grid.from_config(copy.deepcopy(config or DEFAULT), SCHEMA)


def test_default_config_is_valid_and_expands():
    g = grid()
    assert list(g.models) == ["tiny"] and list(g.benchmarks) == ["shapes"]
    assert len(g.variants) == 9 and g.seeds == [0, 1]
    assert len(list(g.cells())) == 18
    assert len(g.verdict_files()) == 18
    assert g.model_inputs("tiny") == [BUILT_MODEL.format(model="tiny")]
    assert "results/figures/accuracy.png" in g.final_targets()


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda c: c.update(seedz=[0]), r"config: unknown key 'seedz' \(did you mean 'seeds'\?\)"),
        (
            lambda c: c["variants"].append("wrong_thnk"),
            r"config\.variants\[9\]: .*did you mean 'wrong_think'",
        ),
        (
            lambda c: c["judges"]["rule"].update(kind="rules"),
            r"config\.judges\.rule\.kind: .*did you mean 'rule'",
        ),
        (
            lambda c: c["models"]["tiny"].update(backend="hff"),
            r"config\.models\.tiny\.backend: unknown value 'hff'",
        ),
        (
            lambda c: c["models"].update({"Qwen/7B": {"backend": "hf", "path": "x"}}),
            r"config\.models: .*slugs",
        ),
        (lambda c: c.update(variants=["stop_think"]), r"config\.variants: .*base"),
        (lambda c: c["generation"].update(temperature=-1), r"config\.generation\.temperature"),
    ],
)
def test_config_errors_name_the_bad_key(mutate, expected):
    config = copy.deepcopy(DEFAULT)
    mutate(config)
    with pytest.raises(ConfigError, match=expected):
        validate_config(config, SCHEMA)


def test_model_needs_exactly_one_of_path_and_build():
    config = copy.deepcopy(DEFAULT)
    config["models"]["tiny"]["path"] = "somewhere"
    with pytest.raises(ConfigError, match="config.models.tiny: set either `path` or `build`"):
        grid(config)
    del config["models"]["tiny"]["path"], config["models"]["tiny"]["build"]
    with pytest.raises(ConfigError, match="config.models.tiny: needs `path`"):
        grid(config)


def test_rule_params_hold_only_their_own_slice():
    config = copy.deepcopy(DEFAULT)
    config["models"]["hub"] = {
        "backend": "hf",
        "path": "Qwen/Qwen2.5-VL-7B-Instruct",
        "generation": {"max_new_tokens": 7},
    }
    g = grid(config)
    assert set(g.bench_spec("shapes")) == {"kind", "args", "version"}
    assert set(g.judge_spec("rule")) == {"kind", "args", "version"}
    assert g.variant_spec("wrong_think")["name"] == "wrong_think"
    hub = g.model_spec("hub")
    assert hub["path"] == "Qwen/Qwen2.5-VL-7B-Instruct" and hub["generation"]["max_new_tokens"] == 7
    assert g.model_spec("tiny")["generation"]["max_new_tokens"] == DEFAULT["generation"]["max_new_tokens"]
    assert g.model_inputs("hub") == []  # hub models are not workflow inputs
    assert g.model_gpus("hub") == 1 and g.model_gpus("tiny") == 0
    # Changing a judge leaves every other slice untouched.
    other = copy.deepcopy(config)
    other["judges"]["rule"]["args"] = {"use_option_text": False}
    g2 = grid(other)
    assert g2.judge_spec("rule") != g.judge_spec("rule")
    assert g2.model_spec("tiny") == g.model_spec("tiny") and g2.bench_spec("shapes") == g.bench_spec("shapes")


def test_vllm_models_request_their_tensor_parallel_gpus():
    config = copy.deepcopy(DEFAULT)
    config["models"]["tp4"] = {"backend": "vllm", "path": "hub/m", "settings": {"tensor_parallel_size": 4}}
    config["models"]["tp1"] = {"backend": "vllm", "path": "hub/m"}
    config["models"]["pinned"] = {"backend": "vllm", "path": "hub/m", "gpus": 2}
    g = grid(config)
    assert (g.model_gpus("tp4"), g.model_gpus("tp1"), g.model_gpus("pinned")) == (4, 1, 2)
    assert g.model_spec("tp4")["version"] == 1  # resolving the version imports no vllm


def test_cell_entries_follow_the_path_grammar():
    entries = cell_entries(grid().axes())
    assert len(entries) == 18
    e = entries[0]
    assert e["generations"] == "results/generations/tiny/shapes/base/seed0.jsonl"
    assert e["logits"] == "results/logits/tiny/shapes/base/seed0.parquet"
    assert e["verdicts"] == "results/verdicts/rule/tiny/shapes/base/seed0.jsonl"


def test_dag_build_imports_no_torch():
    code = (
        "import sys, yaml; from cotprobe.workflow import Grid;"
        f"g = Grid.from_config(yaml.safe_load(open({str(ROOT / 'config/config.yaml')!r})), {str(SCHEMA)!r});"
        "[g.model_spec(m) for m in g.models]; [g.bench_spec(b) for b in g.benchmarks];"
        "[g.variant_spec(v) for v in g.variants]; [g.judge_spec(j) for j in g.judges];"
        "[g.build_spec(m) for m in g.built_model_ids];"
        "heavy = [m for m in ('torch', 'transformers', 'vllm') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "section, pid, args, expected",
    [
        (
            "benchmarks",
            "shapes",
            {"n": 8, "sizee": 3},
            r"config\.benchmarks\.shapes\.args: .*unknown arg 'sizee'",
        ),
        ("benchmarks", "shapes", {"n": -1}, r"config\.benchmarks\.shapes\.args: .*'n'"),
        ("judges", "rule", {"use_option_txt": True}, r"config\.judges\.rule\.args: .*use_option_txt"),
    ],
)
def test_plugin_args_are_checked_before_any_job(section, pid, args, expected):
    config = copy.deepcopy(DEFAULT)
    config[section][pid]["args"] = args
    with pytest.raises(ConfigError, match=expected):
        grid(config).check_plugins()
