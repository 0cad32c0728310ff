"""What ``make test``'s setup steps print: one line per step, and no pip warning a newcomer takes for a
failure (the local indexes' "Location ... is ignored", pip's resolver report on verl's left-out
dependencies)."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("setup", "vllm-env", "verl-env")


def _make(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    dirs = {"VENV": tmp / "venv", "VLLM_VENV": tmp / "venv-vllm", "VERL_VENV": tmp / "venv-verl"}
    cmd = ["make", "--no-print-directory", "-C", str(ROOT), *args, *(f"{k}={v}" for k, v in dirs.items())]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)


def test_each_ready_setup_step_prints_one_line(tmp_path):
    for name in ("venv", "venv-vllm", "venv-verl"):  # built after the checkout: nothing to build
        (tmp_path / name).mkdir()
        (tmp_path / name / ".installed").touch()
    proc = _make(tmp_path, *STEPS)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert proc.stderr == "" and len(lines) == len(STEPS), proc.stdout
    for line, name in zip(lines, ("venv", "venv-vllm", "venv-verl")):
        assert line.startswith("ok ") and str(tmp_path / name) in line, line


def test_a_build_prints_one_line_and_silences_pip_warnings(tmp_path):
    tmp = tmp_path
    proc = _make(tmp_path, "-n", "-B", *STEPS)  # what a fresh machine runs, without running it
    assert proc.returncode == 0, proc.stderr
    commands = [shlex.split(line) for line in proc.stdout.splitlines()]
    said = [c for c in commands if c[0] == "printf"]
    assert [c[2] for c in said] == ["build", "ok"] * len(STEPS)
    pips = [c for c in commands if len(c) > 1 and c[0].endswith("/bin/pip")]
    assert len(pips) == 8
    for c in pips:  # -qq: pip's errors print, its warnings do not
        assert c.count("--quiet") == 2, c
    (verl,) = [c for c in pips if any(a.startswith("verl==") for a in c)]
    assert "--no-deps" in verl and "--no-warn-conflicts" in verl
    # verl's venv takes the main venv's torch stack as hard links before its pip installs the rest.
    lines = proc.stdout.splitlines()
    linked = [i for i, line in enumerate(lines) if "envs/link_torch.py" in line]
    verl_pips = [i for i, line in enumerate(lines) if "venv-verl/bin/pip" in line]
    assert len(linked) == 1 and linked[0] < min(verl_pips), proc.stdout
    assert f"{tmp / 'venv'} {tmp / 'venv-verl'}" in lines[linked[0]]
    # The import checks print their log lines only when they fail.
    checks = [line for line in proc.stdout.splitlines() if '-c "import ' in line]
    assert len(checks) == 2 and all(line.startswith("out=$(") and "exit 1" in line for line in checks)


def _fake_apt(bin_dir: Path, fail: bool) -> None:
    """``apt-get`` that says what debconf says on a bare image, and (unless ``fail``) installs a
    ``chromium``; ``id`` says root, so no sudo."""
    chromium = bin_dir / "chromium"
    script = (
        "#!/bin/sh\necho 'debconf: delaying package configuration, since apt-utils is not installed' >&2\n"
        + ("echo 'E: Unable to locate package chromium' >&2; exit 100\n" if fail else "")
        + f"if [ \"$1\" = install ]; then printf '#!/bin/sh\\necho Chromium 1.0\\n' > {chromium}; "
        f"{shutil.which('chmod')} +x {chromium}; fi\n"
    )
    for name, text in (("apt-get", script), ("id", "#!/bin/sh\necho 0\n")):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)


@pytest.mark.parametrize("fail", [False, True])
def test_chromium_prints_apts_output_only_when_it_fails(tmp_path, fail):
    _fake_apt(tmp_path, fail)
    proc = subprocess.run(
        [shutil.which("make"), "--no-print-directory", "-C", str(ROOT), "chromium"],
        capture_output=True, text=True, check=False, timeout=60, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    if fail:
        assert proc.returncode != 0 and "Unable to locate package chromium" in proc.stdout
    else:
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
        assert proc.stdout.splitlines() == ["build  chromium (apt-get)", "ok     Chromium 1.0"]
