"""The study through the project's SLURM profile, on a real one-node SLURM cluster on localhost.

`tests/workflow/slurm/local-slurm.sh` installs SLURM from Debian's packages if needed (root) and
starts munged, slurmctld and slurmd with their config, state, sockets and logs in a temporary directory
of their own; only this module's processes see the cluster (``SLURM_CONF``, and the directory's client
wrappers first on ``PATH``), and the module stops the daemons and removes the directory afterwards:
nothing system-wide is configured.
Snakemake runs with `--workflow-profile workflow/profiles/slurm` plus the site profile
`tests/workflow/slurm/local.yaml` (partition `debug`, squeue as status command, short first check).
"""

import copy
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml


def _conftest():
    """tests/workflow/conftest.py (conftest modules are not importable by name)."""
    spec = importlib.util.spec_from_file_location(
        "workflow_conftest", Path(__file__).with_name("conftest.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


ROOT, Study = _conftest().ROOT, _conftest().Study
pytestmark = pytest.mark.slow
SLURM_DIR = ROOT / "tests/workflow/slurm"
START = SLURM_DIR / "local-slurm.sh"
SITE = SLURM_DIR / "local.yaml"
PROFILE = "workflow/profiles/slurm"
# Two variants (one plain, one pushing), four samples and a 5-step warm start keep this run short;
# every rule of the study still runs, through sbatch or locally (what is checked here is where and how
# the jobs ran, not what the model answers).
VARIANTS = ["base", "wrong_think"]
SAMPLES = 4
SUBMITTED = "Job {} has been submitted with SLURM jobid {} (log: {})"
RUN_TIMEOUT_S = 900
MODELS = ["tiny", "grpo-s0-step2"]  # the tiny model and its one saved GRPO step


# What a SLURM cluster configured machine-wide would leave behind for every later program (a slurm.conf
# of a stopped controller makes every later `snakemake` wait ~10 s in the executor plugin's
# `scontrol show config`).
SYSTEM_CONFIG = [Path(d, f) for d in ("/etc/slurm", "/etc/slurm-llnl")
                 for f in ("slurm.conf", "gres.conf", "cgroup.conf")]  # fmt: skip


def _system_config() -> dict[Path, bytes | None]:
    return {f: f.read_bytes() if f.exists() else None for f in SYSTEM_CONFIG}


def _start(home: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
    return subprocess.run(["bash", str(START), "start", str(home)], env=env, check=False,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def _stop(home: Path) -> None:
    subprocess.run(["bash", str(START), "stop", str(home)], check=False, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def slurm():
    """A running local cluster private to this module: its config, state and daemons live in a temporary
    directory that only this module's processes are pointed to (``SLURM_CONF``); afterwards the daemons
    are stopped and the directory removed."""
    before = _system_config()
    home = Path(tempfile.mkdtemp(prefix="cotprobe-slurm-"))
    proc = _start(home)
    saved = {k: os.environ.get(k) for k in ("SLURM_CONF", "PATH")}
    # This process and the ones it starts (Snakemake, its jobs: the wrappers in bin/ survive the jobstep
    # plugin, which drops SLURM_* variables before its srun).
    os.environ["SLURM_CONF"] = str(home / "slurm.conf")
    os.environ["PATH"] = f"{home / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    try:
        assert proc.returncode == 0, f"local-slurm.sh failed:\n{proc.stdout}\n{proc.stderr}"
        yield home
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        _stop(home)
        shutil.rmtree(home, ignore_errors=True)
    assert _system_config() == before  # the machine's SLURM configuration as this module found it


def test_the_local_cluster_is_private_and_leaves_no_system_wide_configuration(tmp_path):
    before = _system_config()
    home = tmp_path / "slurm"
    proc = _start(home)
    try:
        assert proc.returncode == 0, f"local-slurm.sh failed:\n{proc.stdout}\n{proc.stderr}"
        env = {k: v for k, v in os.environ.items() if k != "SLURM_CONF"}
        ours = {**env, "PATH": f"{home / 'bin'}{os.pathsep}{env['PATH']}"}
        show = ["scontrol", "show", "config"]
        proc = subprocess.run(show, env=ours, capture_output=True, text=True, timeout=60, check=False)
        assert re.search(r"ClusterName\s*=\s*cotprobetest", proc.stdout), proc.stdout + proc.stderr
        # Inside a job, a step runs without SLURM_* variables (as the jobstep plugin starts its srun).
        job = ["sbatch", "--wait", "-o", str(tmp_path / "job.log"), "--wrap", "env -u SLURM_CONF srun true"]
        proc = subprocess.run(job, env=ours, capture_output=True, text=True, timeout=120, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr + (tmp_path / "job.log").read_text()
        # A program not pointed to this cluster does not see it (and finds no configuration to wait on).
        other = subprocess.run(show, env=env, capture_output=True, text=True, timeout=60, check=False)
        assert "cotprobetest" not in other.stdout
        assert _system_config() == before
        pids = [int(f.read_text()) for f in home.glob("*/*.pid")]  # munged, slurmctld, slurmd
        assert len(pids) == 3, pids
    finally:
        _stop(home)
    assert not any(Path(f"/proc/{pid}").exists() for pid in pids), pids
    assert _system_config() == before


def run_snakemake(study: Study, *args: str) -> subprocess.CompletedProcess:
    """Snakemake in the study with the SLURM workflow profile and the local site profile."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    cmd = [sys.executable, "-m", "snakemake", "--workflow-profile", PROFILE, "--profile", str(SITE), *args]
    return subprocess.run(
        cmd, cwd=study.path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
    )


def submitted_jobs(output: str) -> dict[int, Path]:
    """SLURM job id -> its SLURM log, from Snakemake's submission lines."""
    pattern = re.escape(SUBMITTED).replace(r"\{\}", r"(\S+)")
    return {int(m[2]): Path(m[3]) for m in re.finditer(pattern, output)}


def slurm_jobs(ids) -> dict[int, dict[str, str]]:
    """State, comment (rule and wildcards), CPUs, memory and time limit of finished jobs, from squeue.

    Without accounting, squeue still lists finished jobs for MinJobAge (3600 s in local-slurm.sh).
    """
    out = subprocess.run(
        ["squeue", "--states=all", "--noheader", "--format=%i|%T|%k|%C|%m|%l", "--jobs", ",".join(map(str, ids))],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    jobs = {}
    for line in out.splitlines():
        job_id, state, comment, cpus, mem, limit = line.split("|")
        jobs[int(job_id)] = {"state": state, "comment": comment, "cpus": int(cpus), "mem_mb": _mb(mem),
                             "minutes": _minutes(limit)}  # fmt: skip
    return jobs


def _mb(text: str) -> float:
    units = {"K": 1 / 1024, "M": 1, "G": 1024, "T": 1024**2}
    return float(text[:-1]) * units[text[-1]]


def _minutes(text: str) -> int:
    days, _, hms = text.rpartition("-")
    parts = [int(p) for p in hms.split(":")]
    h, m, s = [0] * (3 - len(parts)) + parts
    return int(days or 0) * 1440 + h * 60 + m + (s > 0)


def profile_resources(rule: str, attempt: int) -> dict[str, int]:
    """The profile's set-resources of ``rule``, its expressions evaluated for ``attempt``."""
    profile = yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())
    return {
        name: eval(str(value), {"attempt": attempt}) for name, value in profile["set-resources"][rule].items()
    }


def profile_rules() -> list[str]:
    return list(yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())["set-resources"])


def rule_of(comment: str) -> str:
    # "rule_<rule>_wildcards_<...>"
    return re.sub(r"^rule_|_wildcards_.*$", "", comment)


def _group(rule: str) -> str:
    """A group job's name without its rules: ``generate-tiny_<rules>`` -> ``generate-tiny``."""
    return rule.split("_", 1)[0] if rule.startswith("generate-") else rule


@pytest.fixture(scope="module")
def slurm_study(slurm, tmp_path_factory):
    study = Study(tmp_path_factory.mktemp("slurm-study"))
    config = copy.deepcopy(study.config)
    config["variants"] = VARIANTS
    config["benchmarks"]["shapes"]["args"]["n"] = SAMPLES
    config["models"]["tiny"]["build"]["warm_start"]["steps"] = 5
    # Kept small: the rule judge only, and one training seed (its saved step is a second model).
    config["judges"] = {"rule": {"kind": "rule"}}
    config["training"]["runs"]["grpo"]["seeds"] = [0]
    study.write_config("slurm.yaml", config)
    proc = run_snakemake(study, "--configfile", "slurm.yaml", "--jobs", "4", "--show-failed-logs")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    return study, config, output


def test_every_cell_went_through_sbatch_and_completed(slurm_study):
    _, _, output = slurm_study
    submitted = submitted_jobs(output)
    jobs = slurm_jobs(submitted)
    assert set(jobs) == set(submitted), "squeue lost track of submitted jobs"
    assert {j["state"] for j in jobs.values()} == {"COMPLETED"}, jobs
    rules = sorted(_group(rule_of(j["comment"])) for j in jobs.values())
    n = len(VARIANTS)
    models = 2  # tiny and its one saved GRPO step
    # wrong_think plants an option: one acknowledgment cell per model (the rule judge).
    assert rules == sorted(
        ["prepare_benchmark", "build_tiny_model", "prepare_training_data", "train_grpo"]
        + ["perturb_prompts"] * n
        + [f"generate-{m}" for m in MODELS] + ["judge_completions"] * n * models
        + ["acknowledge_plants"] * models
    )  # fmt: skip
    for log in submitted.values():  # kept by slurm-keep-successful-logs in local.yaml
        assert log.exists(), log


def test_the_profile_resources_reach_slurm(slurm_study):
    _, _, output = slurm_study
    jobs = slurm_jobs(submitted_jobs(output)).values()
    for rule in profile_rules():
        if rule in ("generate_completions", "early_answer"):
            # Their cells run as group jobs, whose requests test_the_cells_of_a_model_... checks.
            assert any(
                rule in rule_of(j["comment"]) and rule_of(j["comment"]).startswith("generate-") for j in jobs
            )
            continue
        want = {k: v for k, v in profile_resources(rule, attempt=1).items() if k != "model_slot"}
        mine = [j for j in jobs if rule_of(j["comment"]) == rule]
        assert mine, f"no SLURM job of rule {rule}: the profile's requests for it were never checked"
        for job in mine:
            got = {"cpus_per_task": job["cpus"], "mem_mb": job["mem_mb"], "runtime": job["minutes"]}
            assert got == want, (rule, got, want)


def test_the_cells_of_a_model_are_one_group_job_that_loads_it_once(slurm_study):
    from cotprobe.serving.leases import count_loads

    study, _, output = slurm_study
    groups = {_group(rule_of(j["comment"])): j for j in slurm_jobs(submitted_jobs(output)).values()}
    cell = profile_resources("generate_completions", attempt=1)
    early = profile_resources("early_answer", attempt=1)
    assert cell.pop("model_slot") == early.pop("model_slot") == 1
    assert {k: v for k, v in early.items() if k != "runtime"} == {
        k: v for k, v in cell.items() if k != "runtime"
    }
    for model in MODELS:
        job = groups[f"generate-{model}"]
        # One cell's CPUs and memory (its cells run one after another: model_slot), their summed
        # runtime: every variant's generation and the base think's early-answer cell.
        got = {"cpus_per_task": job["cpus"], "mem_mb": job["mem_mb"], "runtime": job["minutes"]}
        assert got == {**cell, "runtime": cell["runtime"] * len(VARIANTS) + early["runtime"]}, (model, got)
        logs = [f"logs/generate_completions/{model}/shapes/{v}/seed0.log" for v in VARIANTS]
        for log in (
            study.file(p).read_text() for p in [*logs, f"logs/early_answer/{model}/shapes/seed0.log"]
        ):
            assert "using model server http://127.0.0.1:" in log and "loaded hf backend" not in log
    root = study.file(".cotprobe/model_servers")
    assert count_loads(root) == dict.fromkeys(MODELS, 1)
    # Each group job kept its server to itself (another job cannot attach to or stop it).
    scopes = {d.name for d in root.iterdir() if d.is_dir() and d.name != "logs"}
    assert len(scopes) == len(MODELS) and all(".slurm" in name for name in scopes), scopes


def test_aggregation_and_plotting_stay_local(slurm_study):
    _, _, output = slurm_study
    for rule in ("compute_metrics", "plot_figures", "training_curves", "all"):
        assert f"localrule {rule}:" in output
    comments = [j["comment"] for j in slurm_jobs(submitted_jobs(output)).values()]
    assert not any(
        rule_of(c) in {"compute_metrics", "plot_figures", "training_curves", "all"} for c in comments
    )


def test_every_expected_output_exists_and_nothing_is_stale(slurm_study):
    study, _, _ = slurm_study
    expected = [
        "results/data/shapes/samples.jsonl",
        "resources/models/tiny/cotprobe_model.json",
        "results/metrics/cells.csv",
        "results/metrics/summary.csv",
        "results/metrics/auroc.csv",
        "results/metrics/training_curves.csv",
        "results/training/grpo/seed0/step2/model.safetensors",
    ]
    expected += [
        f"results/figures/{name}.{ext}"
        for name in ("accuracy", "quadrants", "auroc", "training_curves")
        for ext in ("png", "pdf")
    ]
    for v in VARIANTS:
        expected.append(f"results/prompts/shapes/{v}/seed0.jsonl")
        for model in ("tiny", "grpo-s0-step2"):
            expected += [
                f"results/generations/{model}/shapes/{v}/seed0.jsonl",
                f"results/logits/{model}/shapes/{v}/seed0.parquet",
                f"results/verdicts/rule/{model}/shapes/{v}/seed0.jsonl",
            ]
    for rel in expected:
        assert study.file(rel).stat().st_size > 0, rel
    assert len(study.file("results/data/shapes/samples.jsonl").read_text().splitlines()) == SAMPLES
    assert study.planned_jobs("slurm.yaml") == []


def test_a_failing_job_fails_the_run_shows_its_log_and_retries_with_more(slurm, tmp_path):
    study = Study(tmp_path)
    config = copy.deepcopy(study.config)
    config["benchmarks"] = {"broken": {"kind": "cvbench", "args": {"path": "missing/cvbench.parquet"}}}
    study.write_config("broken.yaml", config)
    # One retry (the profile has two) keeps this cheap and still shows the growth per attempt.
    proc = run_snakemake(
        study, "--configfile", "broken.yaml", "--retries", "1", "--show-failed-logs",
        "results/data/broken/samples.jsonl",
    )  # fmt: skip
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output
    assert "Logfile logs/prepare_benchmark/broken.log:" in output
    assert "error: missing/cvbench.parquet: file not found" in output
    jobs = sorted(slurm_jobs(submitted_jobs(output)).items())
    assert [j["state"] for _, j in jobs] == ["FAILED", "FAILED"], jobs
    for attempt, (_, job) in enumerate(jobs, start=1):
        want = profile_resources("prepare_benchmark", attempt)
        assert (job["mem_mb"], job["minutes"]) == (want["mem_mb"], want["runtime"]), (attempt, job)


def test_profile_names_only_existing_rules(tmp_path):
    study = Study(tmp_path)
    proc = study.run("--list-rules", "--configfile", "test.yaml")
    rules = set(proc.stdout.split())
    profile = yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())
    assert set(profile["set-resources"]) <= rules


def test_lint_is_clean_with_the_slurm_profile(tmp_path):
    study = Study(tmp_path)
    proc = run_snakemake(study, "--lint", "--configfile", "test.yaml")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "workflow is in a good condition" in proc.stdout + proc.stderr


def test_the_site_examples_are_valid():
    from snakemake_executor_plugin_slurm.partitions import read_partition_file

    site = yaml.safe_load((ROOT / PROFILE / "site.example.yaml").read_text())
    assert set(site["default-resources"]) == {"slurm_partition", "slurm_account"}
    partitions = {p.name: p.limits for p in read_partition_file(ROOT / PROFILE / "partitions.example.yaml")}
    assert partitions["gpu"].max_gpu > 0 and partitions["cpu"].max_gpu == 0
    # The project profile must not own default-resources, or a site profile's would be ignored.
    assert "default-resources" not in yaml.safe_load((ROOT / PROFILE / "config.yaml").read_text())
