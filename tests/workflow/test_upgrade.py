"""An upgrade that only rewrites rule commands: the finished study's results are kept, not rerun
(``python -m cotprobe.upgrade``), and a study with other due work is left untouched."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path


def _upgrade(study) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "cotprobe.upgrade", "--configfile", "test.yaml"],
        cwd=study.path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_a_changed_command_is_recorded_without_rerunning_and_other_work_is_refused(finished_study, tmp_path):
    s = finished_study.copy_to(tmp_path / "study")
    # A release that rewrote the generation command (an extra space changes nothing it computes).
    rule = s.file("workflow/rules/generate.smk")
    text = rule.read_text()
    assert text.count(" --threads {threads}") == 1
    rule.write_text(text.replace(" --threads {threads}", "  --threads {threads}"))
    due = {r for r, _ in s.planned_jobs()}
    assert "generate_completions" in due and "judge_completions" in due

    # Other due work too (a deleted output): refused, nothing touched.
    summary = s.file("results/metrics/summary.csv")
    aside = tmp_path / "summary.csv"
    shutil.move(summary, aside)
    proc = _upgrade(s)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "reasons other than a changed command" in proc.stderr
    shutil.move(aside, summary)
    assert {r for r, _ in s.planned_jobs()} == due

    results = _digest(s.file("results"))
    proc = _upgrade(s)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "recorded the new commands" in proc.stdout
    assert s.planned_jobs() == []
    assert _digest(s.file("results")) == results  # touched, not rewritten
    proc = _upgrade(s)
    assert proc.returncode == 0 and "nothing to record" in proc.stdout
