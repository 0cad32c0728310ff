"""The conda envs under envs/: every rule names one that exists, and their pins agree with pyproject."""

import ast
import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

from cotprobe.backends import BACKENDS
from cotprobe.training import TRAINERS

ROOT = Path(__file__).resolve().parents[2]
# vLLM and verl pin their own torch/transformers (incompatible with the CPU study's): their envs
# are held to exact pins but not to pyproject's bounds or the other envs' versions.
OWN_STACKS = {"vllm.yaml", "verl.yaml"}
RULES = sorted((ROOT / "workflow/rules").glob("*.smk"))


def _conda_directives() -> dict[str, str]:
    """rule -> the value of its ``conda:`` directive (a quoted path or a function name)."""
    found = {}
    for path in RULES:
        for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", path.read_text(), re.MULTILINE):
            match = re.search(r"^    conda:\n        (.+)$", body, re.MULTILINE)
            found[rule] = match.group(1).strip() if match else None
    return found


def _pip(env: Path) -> list[Requirement]:
    deps = yaml.safe_load(env.read_text())["dependencies"]
    return [Requirement(r) for d in deps if isinstance(d, dict) for r in d["pip"]]


def test_every_rule_runs_in_an_existing_env():
    directives = _conda_directives()
    assert {"prepare_benchmark", "generate_completions", "judge_completions", "plot_figures"} <= set(
        directives
    )
    for rule, value in directives.items():
        assert value, f"rule {rule} has no conda: directive"
        if value in ("model_env", "judge_env"):
            continue
        assert (ROOT / "workflow/rules" / ast.literal_eval(value)).resolve().is_file(), (rule, value)


def test_every_registered_backend_and_trainer_has_an_env():
    plugins = [BACKENDS.get(b) for b in BACKENDS.names()] + [TRAINERS.get(t) for t in TRAINERS.names()]
    for plugin in plugins:
        assert (ROOT / "envs" / f"{plugin.env}.yaml").is_file(), (plugin, plugin.env)


def test_envs_pin_python_and_every_package_within_pyproject_bounds():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    bounds = {}
    extras = [spec for group in project["optional-dependencies"].values() for spec in group]
    for spec in project["dependencies"] + extras:
        req = Requirement(spec)
        bounds.setdefault(req.name.lower(), []).append(req.specifier)
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        deps = yaml.safe_load(env.read_text())["dependencies"]
        assert "python=3.11" in deps, env.name
        post_deploy = env.with_suffix(".post-deploy.sh")
        assert post_deploy.is_file() and "pip install --no-deps -e" in post_deploy.read_text(), env.name
        for req in _pip(env):
            (pin,) = req.specifier
            assert pin.operator == "==", (env.name, str(req))
            if env.name in OWN_STACKS:
                continue
            for spec in bounds.get(req.name.lower(), []):
                assert spec.contains(pin.version), (env.name, str(req), str(spec))


def test_envs_share_versions():
    versions = {}
    for env in sorted((ROOT / "envs").glob("*.yaml")):
        if env.name in OWN_STACKS:
            continue
        for req in _pip(env):
            versions.setdefault(req.name.lower(), set()).add(str(req.specifier))
    assert {name: v for name, v in versions.items() if len(v) > 1} == {}


def test_the_verl_env_runs_the_hydra_the_tests_compose_with():
    """envs/verl.yaml (GPU runs) and envs/verl-cpu/requirements.txt (.venv-verl, the tests) agree."""
    cpu = {}
    for line in (ROOT / "envs/verl-cpu/requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            req = Requirement(line)
            pins = list(req.specifier)
            assert len(pins) == 1 and pins[0].operator == "==", f"not pinned: {req}"
            cpu[req.name.lower()] = pins[0].version
    gpu = {req.name.lower(): next(iter(req.specifier)).version for req in _pip(ROOT / "envs/verl.yaml")}
    assert {"hydra-core", "omegaconf"} <= cpu.keys() & gpu.keys()
    assert {name: (cpu[name], gpu[name]) for name in cpu.keys() & gpu.keys() if cpu[name] != gpu[name]} == {}
