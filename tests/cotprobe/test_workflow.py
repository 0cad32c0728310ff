"""The grid: config validation, per-rule slices, targets; and that none of it imports torch."""

import copy
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cotprobe.parsing import PARSER_VERSION
from cotprobe.training import TRAINERS
from cotprobe.variants import VARIANTS
from cotprobe.workflow import BUILT_MODEL, ConfigError, Grid, cell_entries, validate_config

ROOT = Path(__file__).resolve().parents[2]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
DEFAULT = yaml.safe_load((ROOT / "config/config.yaml").read_text())


def grid(config=None):
    return Grid.from_config(copy.deepcopy(config or DEFAULT), SCHEMA)


def one_run(**changes):
    """The default study with one GRPO run ``grpo`` (its ``grpo_aug`` settings, 4 steps saved every 2)."""
    config = copy.deepcopy(DEFAULT)
    run = {k: v for k, v in config["training"]["runs"]["grpo_aug"].items() if k != "step_variants"}
    config["training"]["runs"] = {"grpo": {**run, "total_steps": 4, "save_every": 2, **changes}}
    return config


def test_default_config_is_valid_and_expands():
    g = grid()
    steps = [50, 100]
    trained = [f"grpo_{arm}-s{s}-step{n}" for arm in ("aug", "noaug") for s in (0, 1) for n in steps]
    assert list(g.models) == ["tiny", *trained] and list(g.benchmarks) == ["shapes"]
    assert g.variants == DEFAULT["variants"] and g.seeds == [0, 1]
    # The organism and each run's last steps on every variant, the earlier steps on three.
    assert len(list(g.cells())) == 18 * 5 + 6 * 4
    assert len(g.verdict_files()) == len(list(g.cells()))
    assert g.model_variants("grpo_aug-s1-step50") == ["base", "wrong_think", "wrong_caption"]
    assert g.model_inputs("tiny") == [BUILT_MODEL.format(model="tiny")]
    assert g.model_inputs("grpo_noaug-s1-step100") == ["results/training/grpo_noaug/seed1/step100"]
    assert g.model_gpus("grpo_noaug-s1-step100") == 0 and g.train_gpus("grpo_aug") == 0
    assert g.train_spec("grpo_aug")["augment"] and not g.train_spec("grpo_noaug")["augment"]
    assert "results/figures/accuracy.png" in g.final_targets()
    assert "results/metrics/training_curves.csv" in g.final_targets()
    # The training curves' think diagnostics read the parsed thinks of every step and of the base.
    parsed = g.training_parsed()
    assert len(parsed) == 18 * 5 + 6 * 4 and len(set(parsed)) == len(parsed)
    assert "results/parsed/grpo_aug-s1-step100/shapes/wrong_think_but/seed1.jsonl" in parsed
    assert "results/parsed/grpo_aug-s1-step50/shapes/wrong_think/seed1.jsonl" in parsed
    assert "results/parsed/tiny/shapes/base/seed0.jsonl" in parsed
    assert g.training_parsed_axes()["variants"] == g.variants


def test_one_run_expands():
    g = grid(one_run())
    assert len(list(g.cells())) == 18 * 5
    assert g.training_parsed_axes() == {"benchmarks": ["shapes"], "variants": g.variants, "seeds": [0, 1]}


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


def test_build_spec_is_the_default_studys_cache_key():
    # The literal key the default study's organism has been built under: a change here rebuilds it.
    assert grid().build_spec("tiny") == {
        "seed": 0,
        "kind": "tiny",
        "warm_start": {
            "recipe": "v5",
            "plain_steps": 1400,
            "plain_lr": 0.0005,
            "steps": 1000,
            "lr": 0.001,
            "n_train": 10000,
            "batch_size": 32,
            "vision_lr_scale": 1.0,
            "hold_out_orders": True,
            "min_accuracy": 0.6,
            "seed": 0,
        },
        "version": 3,
        "warm_start_version": 5,
    }
    config = copy.deepcopy(DEFAULT)
    config["models"]["tiny"]["build"] = {"kind": "tiny", "seed": 2}
    assert grid(config).build_spec("tiny") == {"kind": "tiny", "seed": 2, "version": 3}
    config["models"]["tiny"]["build"]["warm_start"] = {"steps": 1, "n_train": 1}
    assert grid(config).build_spec("tiny")["warm_start_version"] == 3  # recipe v3, the default


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
    hub = g.model_params("hub")
    assert hub["path"] == "Qwen/Qwen2.5-VL-7B-Instruct" and hub["generation"]["max_new_tokens"] == 7
    assert g.model_params("tiny")["generation"]["max_new_tokens"] == DEFAULT["generation"]["max_new_tokens"]
    assert g.model_inputs("hub") == []  # hub models are not workflow inputs
    assert g.model_gpus("hub") == 1 and g.model_gpus("tiny") == 0
    # Changing a judge leaves every other slice untouched.
    other = copy.deepcopy(config)
    other["judges"]["rule"]["args"] = {"use_option_text": False}
    g2 = grid(other)
    assert g2.judge_spec("rule") != g.judge_spec("rule")
    assert g2.model_params("tiny") == g.model_params("tiny") and g2.bench_spec("shapes") == g.bench_spec(
        "shapes"
    )


def test_vllm_models_request_their_tensor_parallel_gpus():
    config = copy.deepcopy(DEFAULT)
    config["models"]["tp4"] = {"backend": "vllm", "path": "hub/m", "settings": {"tensor_parallel_size": 4}}
    config["models"]["tp1"] = {"backend": "vllm", "path": "hub/m"}
    config["models"]["pinned"] = {"backend": "vllm", "path": "hub/m", "gpus": 2}
    g = grid(config)
    assert (g.model_gpus("tp4"), g.model_gpus("tp1"), g.model_gpus("pinned")) == (4, 1, 2)
    assert g.model_params("tp4")["version"] == 1  # resolving the version imports no vllm


def test_cell_entries_follow_the_path_grammar():
    g = grid()
    entries = cell_entries(g.axes())
    assert len(entries) == len(list(g.cells())) == 18 * 5 + 6 * 4  # earlier steps on three variants
    e = entries[0]
    assert e["parsed"] == "results/parsed/tiny/shapes/base/seed0.jsonl"
    assert e["logits"] == "results/logits/tiny/shapes/base/seed0.parquet"
    assert e["verdicts"] == "results/verdicts/rule/tiny/shapes/base/seed0.jsonl"


def test_aggregate_versions_are_read_from_their_modules():
    from cotprobe import figures, metrics, samples, workflow

    assert workflow.METRICS_VERSION == metrics.METRICS_VERSION
    assert workflow.FIGURES_VERSION == figures.FIGURES_VERSION
    assert workflow.SAMPLES_VERSION == samples.SAMPLES_VERSION
    with pytest.raises(RuntimeError, match="found 0"):
        workflow.module_constant("cotprobe.metrics", "NO_SUCH_VERSION")


@pytest.mark.parametrize(
    "configfile", ["config/config.yaml", "config/paper.yaml", "tests/workflow/config/config.yaml"]
)
def test_dag_build_imports_no_torch(configfile):
    code = (
        "import sys, yaml; from cotprobe.workflow import Grid;"
        f"g = Grid.from_config(yaml.safe_load(open({str(ROOT / configfile)!r})), {str(SCHEMA)!r});"
        "g.check_plugins();"
        "[g.model_params(m) for m in g.models]; [g.bench_spec(b) for b in g.benchmarks];"
        "[g.variant_spec(v) for v in g.variants]; [g.judge_spec(j) for j in g.judges];"
        "[g.build_spec(m) for m in g.built_model_ids];"
        "g.extractor = {'path': 'm', 'settings': {'base_url': 'http://127.0.0.1:1/v1'}};"
        "g.check_plugins(); g.extractor_spec();"
        "heavy = [m for m in ('torch', 'transformers', 'vllm', 'polars', 'matplotlib') if m in sys.modules];"
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


@pytest.mark.parametrize(
    "backend, settings, expected",
    [
        (
            "hf",
            {"devcie": "cpu"},
            r"config\.models\.other\.settings: unknown setting 'devcie'\. Did you mean 'device'\?",
        ),
        (
            "openai",
            {"base_url": "http://x/v1", "max_retry": 3},
            r"unknown setting 'max_retry'\. Did you mean 'max_retries'",
        ),
        (
            "vllm",
            {"tensor_parallel": 2},
            r"unknown setting 'tensor_parallel'\. Did you mean 'tensor_parallel_size'",
        ),
    ],
)
def test_model_settings_are_checked_before_any_job(backend, settings, expected):
    config = copy.deepcopy(DEFAULT)
    config["models"]["other"] = {"backend": backend, "path": "some/model", "settings": settings}
    with pytest.raises(ConfigError, match=expected):
        grid(config).check_plugins()


def test_llm_judge_settings_are_checked_before_any_job():
    config = copy.deepcopy(DEFAULT)
    config["judges"]["llm"] = {"kind": "llm", "args": {"path": "m", "settings": {"dtyp": "float32"}}}
    with pytest.raises(ConfigError, match=r"config\.judges\.llm\.args\.settings: unknown setting 'dtyp'"):
        grid(config).check_plugins()


SECRET = "sk-" + "a1B2c3D4e5F6g7H8i9J0k"  # assembled, so no scanner takes this file for a leak


@pytest.mark.parametrize(
    "where, key, value",
    [
        (("models", "tiny", "settings"), "api_key", "anything"),
        (("models", "tiny", "settings"), "base_url", f"Bearer {SECRET}"),
        (("judges", "rule", "args"), "token", "xyz"),
        (("judges", "rule", "args"), "note", SECRET),
    ],
)
def test_secrets_in_the_config_are_refused_without_echoing_them(where, key, value):
    config = copy.deepcopy(DEFAULT)
    node = config
    for part in where:
        node = node.setdefault(part, {})
    node[key] = value
    with pytest.raises(ConfigError) as err:
        grid(config)
    assert f"config.{'.'.join(where)}.{key}" in str(err.value) and "environment variable" in str(err.value)
    assert value not in str(err.value) and SECRET not in str(err.value)


def test_keys_that_name_an_environment_variable_are_fine():
    config = copy.deepcopy(DEFAULT)
    config["models"]["api"] = {"backend": "openai", "path": "gpt", "settings": {
        "base_url": "http://127.0.0.1:1/v1", "api_key_env": "MY_KEY", "max_retries": 2}}  # fmt: skip
    grid(config).check_plugins()


def test_training_runs_expand_to_step_models():
    g = grid(one_run())
    assert g.trained_outputs("grpo") == [
        "results/training/{run}/seed{seed}/step2",
        "results/training/{run}/seed{seed}/step4",
    ]
    assert g.train_inputs("grpo") == {
        "base": ["resources/models/tiny"], "samples": ["results/training/data/shapes-train/samples.jsonl"],
    }  # fmt: skip
    # A trl job reads the base and the samples; its command gets them as params.
    assert g.train_job_inputs("grpo", 1) == g.train_inputs("grpo")
    assert (
        g.train_samples_option("grpo")
        == "--samples shapes-train=results/training/data/shapes-train/samples.jsonl"
    )
    spec = g.train_spec("grpo")
    assert (
        "seeds" not in spec
        and spec["base"] == "tiny"
        and set(spec["version"]) == {"reward", "augment", "trl", "parser"}
    )
    # The reward reads answer letters with the parser: a parser change retrains.
    assert spec["version"]["parser"] == PARSER_VERSION
    axes = g.training_axes()["grpo"]
    assert axes["base"] == "tiny" and {"seed": 1, "step": 4, "model": "grpo-s1-step4"} in axes["models"]
    m = g.models["grpo-s0-step2"]
    assert (m.backend, m.settings, m.trained) == (
        "hf",
        {"device": "cpu"},
        {"run": "grpo", "seed": 0, "step": 2},
    )
    # Five steps saved every two: 2, 4 and the last.
    config = one_run(total_steps=5, seeds=[3])
    assert [m for m in grid(config).models if m.startswith("grpo")] == [
        "grpo-s3-step2",
        "grpo-s3-step4",
        "grpo-s3-step5",
    ]


def test_step_variants_evaluate_earlier_steps_on_a_subset():
    config = one_run(seeds=[0], step_variants=["wrong_think", "base"])
    g = grid(config)
    # The earlier step on the subset (in the study's order), the last step and the base on everything.
    assert g.model_variants("grpo-s0-step2") == ["base", "wrong_think"]
    assert g.model_variants("grpo-s0-step4") == g.variants == g.model_variants("tiny")
    cells = list(g.cells())
    assert len(cells) == 2 * 9 * 2 + 2 * 2
    assert ("grpo-s0-step2", "shapes", "wrong_caption", 0) not in cells
    assert ("grpo-s0-step2", "shapes", "wrong_think", 1) in cells
    # The aggregate rules rebuild the same cells from the axes.
    entries = cell_entries(g.axes())
    assert sorted((e["model"], e["bench"], e["variant"], e["seed"]) for e in entries) == sorted(cells)
    assert g.axes()["only"] == {"grpo-s0-step2": ["base", "wrong_think"]}
    assert len(g.training_parsed()) == len(cells)
    # Early answering and acknowledgments cover the fully evaluated models only.
    assert g.early_axes()["models"] == ["tiny", "grpo-s0-step4"]
    assert g.ack_axes()["models"] == ["tiny", "grpo-s0-step4"] and "only" not in g.ack_axes()
    # What the steps are evaluated on is not what is trained: the run's spec (and its checkpoints) stay.
    del config["training"]["runs"]["grpo"]["step_variants"]
    assert g.train_spec("grpo") == grid(config).train_spec("grpo")
    # Without step_variants the axes are as before (no rerun of the aggregate rules).
    assert "only" not in grid(one_run()).axes()


@pytest.mark.parametrize(
    "variants, expected",
    [
        (["base", "wrong_thnk"], r"step_variants: 'wrong_thnk' is not a variant of this study"),
        (["wrong_think"], r"step_variants: needs 'base'"),
    ],
)
def test_step_variants_errors(variants, expected):
    config = one_run(step_variants=variants)
    with pytest.raises(ConfigError, match=expected):
        grid(config)


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.update(base="nope"), r"config\.training\.runs\.grpo\.base: 'nope' is not a model id"),
        (lambda r: r.update(data=["sat"]), r"config\.training\.runs\.grpo\.data: 'sat' is not in"),
        (lambda r: r.update(backend="deepspeed"), r"config\.training\.runs\.grpo\.backend: unknown value"),
        (lambda r: r.update(save_evry=3), r"unknown key 'save_evry' \(did you mean 'save_every'\?\)"),
        (lambda r: r.update(augment_probability=0.5), r"augment_probability"),
    ],
)
def test_training_config_errors_name_the_bad_key(mutate, expected):
    config = one_run()
    mutate(config["training"]["runs"]["grpo"])
    with pytest.raises(ConfigError, match=expected):
        grid(config)


# ---- judges: LLM judges, ensembles, agreement ----
TEST_STUDY = yaml.safe_load((ROOT / "tests/workflow/config/config.yaml").read_text())
PAPER = yaml.safe_load((ROOT / "config/paper.yaml").read_text())


def test_two_judges_add_the_ensembles_and_the_agreement_targets():
    g = grid(TEST_STUDY)
    assert list(g.judges) == ["rule", "tiny-llm", "ensemble", "ensemble-strict"]
    assert g.base_judges == ["rule", "tiny-llm"] and g.ensemble_judges == ["ensemble", "ensemble-strict"]
    assert g.judge_spec("ensemble-strict")["args"] == {"judges": ["rule", "tiny-llm"], "rule": "strict"}
    # The figures draw the first judge listed: the second judge (and its ensembles) change nothing there.
    assert g.figure_judge == "rule" and g.agreement_judges == ["rule", "tiny-llm"]
    assert "results/metrics/judge_agreement.csv" in g.final_targets()
    assert g.ensemble_inputs("ensemble", "tiny", "shapes", "base", 0) == [
        "results/verdicts/rule/tiny/shapes/base/seed0.jsonl",
        "results/verdicts/tiny-llm/tiny/shapes/base/seed0.jsonl",
    ]
    # The judge served by the built tiny model depends on it and needs no GPU.
    assert g.judge_inputs("tiny-llm") == [BUILT_MODEL.format(model="tiny")] and g.judge_gpus("tiny-llm") == 0
    assert g.judge_inputs("rule") == []
    # Each judge's cells run in its backend's env: the tiny LLM judge on hf; one on vLLM in vLLM's.
    assert [g.judge_backend(j) for j in g.judges] == ["hf"] * 4
    on_vllm = copy.deepcopy(TEST_STUDY)
    on_vllm["judges"]["tiny-llm"]["args"]["backend"] = "vllm"
    assert grid(on_vllm).judge_backend("tiny-llm") == "vllm"
    # One judge: no ensemble, no agreement table; the figures draw that judge.
    one = grid()
    assert one.ensemble_judges == [] and one.agreement_judges == [] and one.figure_judge == "rule"
    assert not any("judge_agreement" in t for t in one.final_targets())


def test_adding_a_judge_leaves_the_figure_judge_alone():
    config = copy.deepcopy(DEFAULT)
    config["judges"] = {"rule": {"kind": "rule"}}
    config["analysis"] = {"judge": "rule"}
    before = grid(config)
    config["judges"]["r2"] = {"kind": "rule"}
    after = grid(config)
    assert after.ensemble_judges == ["ensemble", "ensemble-strict"]  # the second judge brings ensembles
    assert before.figure_judge == after.figure_judge == "rule"
    assert after.agreement_judges == ["rule", "r2"] and before.agreement_judges == []
    # The figure judge's choice is not a metrics param: metrics cover every judge.
    assert before.analysis == after.analysis and "judge" not in after.analysis
    config["analysis"] = {"judge": "r2", "cross_check": ["rule", "r2"]}
    g = grid(config)
    assert g.figure_judge == "r2" and g.agreement_judges == ["rule", "r2"] and g.analysis == after.analysis
    for key, value in (("judge", "qwen"), ("cross_check", ["rule", "qwen"])):
        config["analysis"] = {key: value}
        with pytest.raises(ConfigError, match=rf"config\.analysis\.{key}: 'qwen' is not a judge"):
            grid(config)


def test_paper_judges():
    g = grid(PAPER)
    assert g.base_judges == ["rule", "qwen3-32b", "gpt-oss-120b", "llama31-70b"]
    assert g.agreement_judges == ["qwen3-32b", "gpt-oss-120b", "llama31-70b"]  # Table 3: the LLM judges
    assert g.figure_judge == "qwen3-32b"  # analysis.judge: the paper's judge draws the figures
    # The hosted models get their pre-fills as an instruction: the metrics keep them out of the
    # pre-fill comparisons; a study without such a model keeps its metrics param unchanged.
    assert g.analysis["prefill_by_instruction"] == ["o3", "o4-mini", "gemini-25-pro", "gemini-31-pro"]
    assert "prefill_by_instruction" not in grid().analysis
    # ... and gates the faithfulness reward of the run that has one.
    [faithful] = [r for r in g.training_runs.values() if (r.get("reward") or {}).get("faithfulness")]
    assert faithful["reward"]["judge"]["args"]["path"] == g.judges["qwen3-32b"]["args"]["path"]
    # Qwen3's thinking mode is set, not left to the template's default.
    for args in (g.judges["qwen3-32b"]["args"], faithful["reward"]["judge"]["args"]):
        assert args["settings"]["chat_template_kwargs"] == {"enable_thinking": False}
    assert g.judge_gpus("qwen3-32b") == 1 and g.judge_gpus("gpt-oss-120b") == 0 and g.judge_gpus("rule") == 0
    g.check_plugins()


def test_llm_judge_spec_names_model_template_and_versions():
    from cotprobe.backends import BACKENDS
    from cotprobe.judges.llm import load_template

    g = grid(TEST_STUDY)
    spec = g.judge_spec("tiny-llm")
    assert (
        spec["args"]["path"] == "resources/models/tiny" and spec["args"]["sampling"]["max_new_tokens"] == 12
    )
    assert spec["prompt_sha256"] == load_template("consistency_v1").sha256 and spec[
        "backend_version"
    ] == BACKENDS.version("hf")
    assert set(g.judge_spec("rule")) == {"kind", "args", "version"}  # the rule judge's cells are unchanged
    # Changing the LLM judge's model leaves every other judge's slice alone (ensembles rerun by their inputs).
    other = copy.deepcopy(TEST_STUDY)
    other["judges"]["tiny-llm"]["args"]["sampling"]["max_new_tokens"] = 20
    g2 = grid(other)
    assert g2.judge_spec("tiny-llm") != spec
    assert all(g2.judge_spec(j) == g.judge_spec(j) for j in ("rule", "ensemble", "ensemble-strict"))


@pytest.mark.parametrize(
    "judges, expected",
    [
        ({"rule": {"kind": "rule"}, "e": {"kind": "ensemble", "args": {"judges": ["rule", "x"]}}},
         r"config\.judges\.e\.args\.judges: 'x' is not a judge of this study"),
        ({"rule": {"kind": "rule"}, "r2": {"kind": "rule"}, "e": {"kind": "ensemble"},
          "e2": {"kind": "ensemble", "args": {"judges": ["rule", "e"]}}},
         r"config\.judges\.e2\.args\.judges: 'e' is an ensemble"),
        ({"rule": {"kind": "rule"}, "ensemble": {"kind": "rule"}},
         r"config\.judges\.ensemble: this id names the automatic ensemble"),
    ],
)  # fmt: skip
def test_ensemble_config_errors(judges, expected):
    config = copy.deepcopy(DEFAULT)
    config["judges"] = judges
    with pytest.raises(ConfigError, match=expected):
        grid(config)


def test_a_step_model_id_may_not_clash():
    config = one_run()
    config["models"]["grpo-s0-step2"] = {"backend": "hf", "path": "x"}
    with pytest.raises(ConfigError, match="clashes"):
        grid(config)


def test_explicit_ensemble_defaults_to_every_judge_and_is_checked():
    config = copy.deepcopy(DEFAULT)
    config["judges"] = {"rule": {"kind": "rule"}, "r2": {"kind": "rule"}, "vote": {"kind": "ensemble"}}
    g = grid(config)
    assert g.ensemble_judges == ["vote"] and g.ensemble_members("vote") == ["rule", "r2"]
    assert g.figure_judge == "rule" and g.agreement_judges == ["rule", "r2"]
    config["analysis"] = {"judge": "vote"}
    assert grid(config).figure_judge == "vote" and grid(config).agreement_judges == ["rule", "r2"]
    config["judges"]["vote"]["args"] = {"rule": "unanimous"}
    with pytest.raises(ConfigError, match=r"config\.judges\.vote\.args: .*'rule' must be one of"):
        grid(config).check_plugins()


EXTRACTOR = {"path": "gpt-x", "settings": {"base_url": "http://127.0.0.1:1/v1", "api_key_env": "SOME_KEY"}}


def test_the_llm_extractor_is_off_by_default_and_its_spec_names_version_and_template():
    from cotprobe.extractor import EXTRACTOR_VERSION, SLOTS
    from cotprobe.judges.llm import load_template

    assert grid().extractor is None and grid().extractor_spec() is None
    config = {**copy.deepcopy(DEFAULT), "extractor": copy.deepcopy(EXTRACTOR)}
    g = grid(config)
    g.check_plugins()
    spec = g.extractor_spec()
    assert {k: spec[k] for k in ("backend", "path", "prompt", "version")} == {
        "backend": "openai", "path": "gpt-x", "prompt": "extract_v1", "version": EXTRACTOR_VERSION,
    }  # fmt: skip
    assert spec["prompt_sha256"] == load_template("extract_v1", SLOTS).sha256 and spec["backend_version"] >= 1
    # Only the parse rule takes it: every other rule's slice is the same as with the extractor off.
    g0 = grid()
    assert all(g.judge_spec(j) == g0.judge_spec(j) for j in g.judges)
    assert all(g.model_params(m) == g0.model_params(m) for m in g.models)
    config["extractor"]["sampling"] = {"max_new_tokens": 4}
    assert grid(config).extractor_spec() != spec


@pytest.mark.parametrize(
    "extractor, expected",
    [
        (
            {**EXTRACTOR, "backend": "hf"},
            r"config\.extractor\.backend: unknown value 'hf'.*\(known: openai\)",
        ),
        ({"settings": {}}, r"config\.extractor: 'path' is a required property"),
        (
            {**EXTRACTOR, "sampling": {"max_tokens": 4}},
            r"config\.extractor\.sampling: unknown key 'max_tokens'",
        ),
        ({**EXTRACTOR, "judge": "rule"}, r"config\.extractor: unknown key 'judge'"),
    ],
)
def test_extractor_config_errors_name_the_bad_key(extractor, expected):
    with pytest.raises(ConfigError, match=expected):
        grid({**copy.deepcopy(DEFAULT), "extractor": extractor})


@pytest.mark.parametrize(
    "extractor, expected",
    [
        ({**EXTRACTOR, "settings": {"base_url": "http://x/v1", "max_retry": 1}},
         r"config\.extractor: unknown setting 'max_retry'\. Did you mean 'max_retries'"),
        ({**EXTRACTOR, "prompt": "consistency_v1"}, r"config\.extractor: prompt template 'consistency_v1' has slots"),
    ],
)  # fmt: skip
def test_extractor_args_are_checked_before_any_job(extractor, expected):
    with pytest.raises(ConfigError, match=expected):
        grid({**copy.deepcopy(DEFAULT), "extractor": extractor}).check_plugins()


def test_image_variants_have_their_own_perturb_rule_reports_and_skip_table():
    config = one_run()
    config["variants"] = ["base", "mirror", "wrong_think", "crop_zoom"]
    g = grid(config)
    assert (g.text_variants, g.image_variants) == (["base", "wrong_think"], ["mirror", "crop_zoom"])
    seeds = config["seeds"]
    assert g.perturb_reports() == [
        f"results/prompts/shapes/{v}/seed{s}.report.json" for v in ("mirror", "crop_zoom") for s in seeds
    ]
    assert "results/metrics/image_skips.csv" in g.final_targets()
    assert g.variant_spec("mirror") == {"name": "mirror", "version": VARIANTS.version("mirror")}
    # The default study has none: no skip table, no report inputs.
    plain = grid()
    assert plain.image_variants == [] and plain.perturb_reports() == []
    assert "results/metrics/image_skips.csv" not in plain.final_targets()


@pytest.mark.parametrize("backend", TRAINERS.names())
def test_each_trainer_decides_its_jobs(backend):
    """The run's trainer (its registry entry) picks the env, command, inputs and version; the rest
    of the train spec is the run's config."""
    config = one_run(backend=backend)
    g = grid(config)
    trainer = g.trainer("grpo")
    assert trainer is TRAINERS.get(backend) and g.trainer_runs(backend) == ["grpo"]
    assert (ROOT / "envs" / f"{trainer.env}.yaml").exists()
    assert g.train_spec("grpo")["version"][backend] == trainer.version
    assert set(trainer.params) <= {"spec", "base", "samples", "out"}
    inputs = g.train_job_inputs("grpo", 3)
    if trainer.prepared:  # the preparation's files, by (run, seed)
        assert inputs == {k: p.format(run="grpo", seed=3) for k, p in trainer.prepared.items()}
    else:
        assert inputs == g.train_inputs("grpo")
