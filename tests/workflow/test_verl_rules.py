"""The verl path as the workflow runs it, with real Snakemake, the real CLI and verl 0.9.1 on a CPU.

A study with one verl run on the tiny model: Snakemake runs ``verl_prepare`` (``python -m cotprobe
verl-prepare``), verl composes its trainer config from the overrides written, then Snakemake runs
``train_v``, i.e. ``bash run.sh``, in ``.venv-verl`` with one stand-in: ``python -m
verl.trainer.main_ppo`` (GPU training) is replaced by verl_checkpoints.py, which takes the same
overrides and saves, through verl's own FSDP checkpoint manager, the checkpoints the trainer would.
The rest of run.sh, verl's model merger on each step, runs for real and must fill the step dirs the
rule declares; the eval env's transformers loads them. And ``config/paper.yaml``'s verl rules in a
dry run.
"""

import importlib.util
import json
import shlex
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from cotprobe.records import Prompt, load_samples
from cotprobe.training.augment import training_prompts
from cotprobe.training.trl_backend import with_prefill
from cotprobe.training.verl_backend import one_line_template

_spec = importlib.util.spec_from_file_location("workflow_conftest", Path(__file__).with_name("conftest.py"))
_conftest = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_conftest)
ROOT, Study, dry_run_jobs = _conftest.ROOT, _conftest.Study, _conftest.dry_run_jobs

WRITER = Path(__file__).with_name("verl_checkpoints.py")
RUN = {
    "base": "tinydir", "data": ["shapes-train"], "backend": "verl", "seeds": [0], "total_steps": 3,
    "save_every": 2, "generations": 2, "prompts_per_step": 4, "lr": 1.0e-5, "beta": 0.01,
    "max_completion_length": 48, "augment": True, "augment_probability": 0.25,
    "verl": {"n_gpus_per_node": 1, "rollout_tensor_parallel": 1,
             "overrides": ["trainer.log_val_generations=0"]},
}  # fmt: skip
STEPS = [2, 3]  # save_every 2 of 3 steps: 2, and the last
D = "results/training/v/seed0"


@pytest.fixture(scope="module")
def verl_study(tmp_path_factory, tiny_model_dir):
    """The study after Snakemake ran ``verl_prepare`` for run v, seed 0 (and the training data it needs)."""
    study = Study(tmp_path_factory.mktemp("verl-study"))
    config = {k: v for k, v in study.config.items() if k not in ("models", "judges", "training")}
    config["variants"] = ["base"]
    config["models"] = {
        "tinydir": {"backend": "hf", "path": str(tiny_model_dir), "settings": {"device": "cpu"}}
    }
    config["judges"] = {"rule": {"kind": "rule"}}
    config["training"] = {"data": study.config["training"]["data"], "runs": {"v": RUN}}
    study.write_config("verl.yaml", config)
    study.run(f"{D}/verl/run.sh", "--cores", "2", "--configfile", "verl.yaml", "--show-failed-logs")
    return study


def run_sh_commands(script: Path) -> list[list[str]]:
    """run.sh's commands, each split as bash splits it (the trainer's spans lines ending in a backslash)."""
    text = script.read_text().replace("\\\n", " ")
    return [
        shlex.split(line) for line in text.splitlines() if line.strip() and not line.startswith(("#", "set "))
    ]


def test_the_prepare_rule_writes_what_verl_reads(verl_study, verl_compose, tiny_model_dir):
    from transformers import AutoProcessor

    d = verl_study.file(f"{D}/verl")
    proc = verl_compose(d / "overrides.txt")
    assert proc.returncode == 0, proc.stderr
    cfg = json.loads(proc.stdout)
    model, trainer = cfg["actor_rollout_ref"]["model"], cfg["trainer"]
    # What the rule passed on the command line (--base, --seed, --name, --out, --spec) reaches verl.
    assert model["path"] == str(tiny_model_dir)
    template = AutoProcessor.from_pretrained(tiny_model_dir).chat_template
    assert model["custom_chat_template"] == one_line_template(with_prefill(template))
    assert cfg["data"]["seed"] == 0 and cfg["actor_rollout_ref"]["rollout"]["n"] == 2
    assert cfg["data"]["train_files"] == str((d / "train.parquet").resolve())
    assert cfg["reward"]["custom_reward_function"]["path"] == str((d / "reward_fn.py").resolve())
    assert trainer["experiment_name"] == "v-s0" and trainer["default_local_dir"] == str(
        (d / "checkpoints").resolve()
    )
    assert trainer["total_training_steps"] == 3 and trainer["save_freq"] == 2
    assert trainer["n_gpus_per_node"] == 1 and trainer["log_val_generations"] == 0
    # The parquet holds the run's (augmented) prompts for seed 0 of the samples the data rule wrote.
    samples = load_samples(verl_study.file("results/training/data/shapes-train/samples.jsonl"))
    expected = training_prompts(samples, bench="shapes-train", seed=0, probability=0.25)
    rows = pq.read_table(d / "train.parquet").to_pylist()
    assert [Prompt(**json.loads(r["extra_info"]["record"])) for r in rows] == expected
    assert any(p.prefill for p in expected)
    # run.sh hands verl's trainer exactly the overrides file, through bash's quoting.
    trainer_cmd, *merges = run_sh_commands(d / "run.sh")
    assert trainer_cmd[:3] == ["python", "-m", "verl.trainer.main_ppo"]
    assert trainer_cmd[3:] == (d / "overrides.txt").read_text().splitlines()
    assert len(merges) == len(STEPS)


def test_the_train_rule_runs_the_prepared_script(verl_study):
    proc = verl_study.run(f"{D}/step3", "-n", "-p", "--configfile", "verl.yaml")
    [job] = dry_run_jobs(proc.stdout + proc.stderr)  # the prepared files are up to date
    assert job.rule == "train_v" and job.outputs == tuple(f"{D}/step{n}" for n in STEPS)
    assert job.shell == f"bash {D}/verl/run.sh > logs/train/v/seed0.log 2>&1"


@pytest.fixture(scope="module")
def trained(verl_study, verl_python, tmp_path_factory):
    """The study after Snakemake ran ``train_v`` (run.sh) in .venv-verl, the trainer stood in for."""
    bin_dir, tmp = tmp_path_factory.mktemp("verl-bin"), tmp_path_factory.mktemp("verl-tmp")
    shim = bin_dir / "python"
    shim.write_text(  # TMPDIR: verl's checkpoint manager leaves lock files there
        "#!/usr/bin/env bash\n"
        f"export TMPDIR={shlex.quote(str(tmp))}\n"
        'if [ "$1 $2" = "-m verl.trainer.main_ppo" ]; then shift 2; '
        f'exec {shlex.quote(str(verl_python))} {shlex.quote(str(WRITER))} "$@"; fi\n'
        f'exec {shlex.quote(str(verl_python))} "$@"\n'
    )
    shim.chmod(0o755)
    verl_study.run(
        f"{D}/step3", "--cores", "2", "--configfile", "verl.yaml", "--show-failed-logs", path_first=bin_dir
    )
    return verl_study


def test_run_sh_merges_verls_checkpoints_into_the_step_dirs(trained, tiny_model_dir):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    log = trained.file("logs/train/v/seed0.log").read_text()
    saved = json.loads(next(line for line in log.splitlines() if line.startswith('{"steps"')))
    # verl's trainer saves at the steps the workflow declares as the rule's outputs.
    assert saved == {"steps": STEPS, "dir": str(trained.file(f"{D}/verl/checkpoints").resolve())}
    base = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    for n in STEPS:
        merged_dir = trained.file(f"{D}/step{n}")
        merged = AutoModelForImageTextToText.from_pretrained(merged_dir).state_dict()
        assert merged.keys() == base.keys()
        # verl's merger writes bf16: step n's fp32 weights (the base shifted by n / 1024), rounded.
        wrong = [k for k in base if not torch.equal(merged[k], (base[k] + n / 1024).to(torch.bfloat16))]
        assert not wrong, f"step {n}: {wrong[:5]}"
        assert (
            AutoProcessor.from_pretrained(merged_dir).chat_template
            == AutoProcessor.from_pretrained(tiny_model_dir).chat_template
        )


def test_the_papers_verl_runs_are_planned(tmp_path):
    """config/paper.yaml's default target, with its evaluation grid cut to one seed and one variant
    (its training section unchanged): every seed of each verl run is prepared, trained by its run.sh
    and every saved step evaluated."""
    study = Study(tmp_path)
    paper = yaml.safe_load((ROOT / "config/paper.yaml").read_text())
    runs = {r: spec for r, spec in paper["training"]["runs"].items() if spec["backend"] == "verl"}
    assert runs, "config/paper.yaml has no verl run"
    name = study.write_config("paper-small.yaml", {**paper, "seeds": [0], "variants": ["base"]})
    proc = study.run("-n", "-p", "--configfile", name)
    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    for run, spec in runs.items():
        steps = sorted(
            {*range(spec["save_every"], spec["total_steps"] + 1, spec["save_every"]), spec["total_steps"]}
        )
        prepare = {
            j.wildcards["seed"]: j for j in jobs if j.rule == "verl_prepare" and j.wildcards["run"] == run
        }
        train = {j.wildcards["seed"]: j for j in jobs if j.rule == f"train_{run}"}
        seeds = [str(s) for s in spec["seeds"]]
        assert sorted(prepare) == sorted(train) == seeds
        for s in seeds:
            d = f"results/training/{run}/seed{s}"
            files = tuple(
                f"{d}/verl/{f}" for f in ("train.parquet", "reward_fn.py", "overrides.txt", "run.sh")
            )
            assert prepare[s].outputs == files
            cmd = shlex.split(prepare[s].shell)
            assert cmd[:3] == ["python", "-m", "cotprobe"] and cmd[3] == "verl-prepare"
            assert cmd[cmd.index("--out") + 1] == d and cmd[cmd.index("--seed") + 1] == s
            assert cmd[cmd.index("--name") + 1] == f"{run}-s{s}"
            assert train[s].outputs == tuple(f"{d}/step{n}" for n in steps)
            assert train[s].shell == f"bash {d}/verl/run.sh > logs/train/{run}/seed{s}.log 2>&1"
            for n in steps:  # each saved step is evaluated as a model of its own
                model = f"{run}-s{s}-step{n}"
                assert any(
                    j.rule == "generate_completions" and j.wildcards.get("model") == model for j in jobs
                ), model
