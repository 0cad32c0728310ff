"""Fingerprints of a workflow run, to show that a refactor changes no output.

Three modes, each printing one line per item, sorted, so that two runs compare with ``diff``:

* ``study``: run the test study (``tests/workflow/config/config.yaml``, the tiny real model) end to
  end in a scratch copy of ``--root`` and print ``sha256  path`` for every file under ``results/``.
  Timing files are not under ``results/`` (``logs/``, ``benchmarks/``). What varies from run to run
  with the same code is normalised before hashing: in JSON and JSON Lines files the fields that
  hold wall times, dates, hosts or pids (listed by ``--show-volatile``); a PDF's ``CreationDate``;
  the sample browser's embedded data, compared as JSON with sorted keys (its thumbnails come in the
  order of a polars ``unique()``); and the line order of TRL's model card (its tags come from a set).
* ``hash``: the same fingerprints of a study already run in ``--work``.
* ``dry-run``: ``snakemake -n -p`` on a config (default ``config/paper.yaml``) in ``--root`` and
  print every job's rule, outputs and shell command.

    PYTHONPATH=$PWD/src python perf/results_digest.py study --root . --work /tmp/s > before.txt
    PYTHONPATH=$PWD/src python perf/results_digest.py dry-run --root . --work /tmp/d > before-dag.txt
    python perf/results_digest.py hash --work /tmp/s

The code the rules run is the ``cotprobe`` that ``python -m cotprobe`` imports (``PYTHONPATH``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

VOLATILE = re.compile(
    r"(^|_)(time|times|runtime|seconds|elapsed|wall|date|started|timestamp|pid|host)($|_)|_s$"
)


def _strip(value):
    """``value`` without the fields named like wall times, dates, hosts or pids (recursively)."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not VOLATILE.search(k)}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def _volatile_keys(value, found: set[str]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            if VOLATILE.search(k):
                found.add(k)
            _volatile_keys(v, found)
    elif isinstance(value, list):
        for v in value:
            _volatile_keys(v, found)


_PDF_DATE = re.compile(rb"/CreationDate \(D:[^)]*\)")
_BROWSER_DATA = re.compile(r"(window\.SAMPLES = )(\{.*?\});?(\s*</script>)", flags=re.DOTALL)


def file_digest(path: Path, volatile: set[str]) -> str:
    """SHA-256 of a file's content, normalised first (see the module docstring)."""
    data = path.read_bytes()
    if path.suffix == ".pdf":
        return hashlib.sha256(_PDF_DATE.sub(b"", data)).hexdigest()
    if path.suffix == ".html":
        text = data.decode("utf-8")
        match = _BROWSER_DATA.search(text)
        if match:
            canonical = json.dumps(json.loads(match.group(2)), sort_keys=True)
            text = text[: match.start(2)] + canonical + text[match.end(2) :]
        return hashlib.sha256(text.encode()).hexdigest()
    if path.name == "README.md" and "/trl/" in path.as_posix():
        return hashlib.sha256("\n".join(sorted(data.decode("utf-8").splitlines())).encode()).hexdigest()
    if path.suffix == ".json":
        try:
            value = json.loads(data)
        except ValueError:
            return hashlib.sha256(data).hexdigest()
        _volatile_keys(value, volatile)
        return hashlib.sha256(json.dumps(_strip(value), sort_keys=True).encode()).hexdigest()
    if path.suffix == ".jsonl":
        h = hashlib.sha256()
        for line in data.decode("utf-8", errors="replace").splitlines():
            try:
                value = json.loads(line)
            except ValueError:
                h.update(line.encode())
                continue
            _volatile_keys(value, volatile)
            h.update(json.dumps(_strip(value), sort_keys=True).encode() + b"\n")
        return h.hexdigest()
    return hashlib.sha256(data).hexdigest()


def _scratch_copy(root: Path, work: Path) -> None:
    """The workflow's files (not the package: that comes from ``PYTHONPATH``) in an empty ``work``."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("Snakefile", "workflow", "config", "envs", "profiles"):
        src = root / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)


def study(root: Path, work: Path, cores: int, show_volatile: bool) -> int:
    _scratch_copy(root, work)
    shutil.copy(root / "tests/workflow/config/config.yaml", work / "test.yaml")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    t0, c0 = time.perf_counter(), os.times()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", str(cores), "--configfile", "test.yaml",
         "--show-failed-logs"],
        check=False, cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    c1 = os.times()
    cpu = (c1.children_user - c0.children_user) + (c1.children_system - c0.children_system)
    print(f"# snakemake exit {proc.returncode}; wall {time.perf_counter() - t0:.0f} s, "
          f"CPU {cpu:.0f} s (shared machine)", file=sys.stderr)  # fmt: skip
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-5000:], file=sys.stderr)
        return proc.returncode
    return digest(work, show_volatile)


def digest(work: Path, show_volatile: bool) -> int:
    volatile: set[str] = set()
    results = work / "results"
    for path in sorted(p for p in results.rglob("*") if p.is_file()):
        print(f"{file_digest(path, volatile)}  {path.relative_to(work)}")
    if show_volatile:
        print(f"# volatile fields dropped: {sorted(volatile)}", file=sys.stderr)
    return 0


def dry_run(root: Path, work: Path, configfile: str) -> int:
    _scratch_copy(root, work)
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", configfile],
        check=False, cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode != 0:
        print(proc.stdout[-5000:], proc.stderr[-5000:], file=sys.stderr)
        return proc.returncode
    sys.path.insert(0, str(root / "tests/workflow"))
    from conftest import dry_run_jobs

    jobs = dry_run_jobs(proc.stdout + proc.stderr)
    lines = sorted(f"{j.rule}\t{','.join(j.outputs)}\t{j.shell}" for j in jobs)
    print("\n".join(lines))
    print(f"# {len(jobs)} jobs; dry run {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("mode", choices=["study", "dry-run", "hash"])
    p.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    p.add_argument("--work", type=Path, required=True, help="scratch directory (emptied first)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--configfile", default="config/paper.yaml")
    p.add_argument("--show-volatile", action="store_true")
    args = p.parse_args()
    if args.mode == "hash":
        return digest(args.work.resolve(), args.show_volatile)
    if args.mode == "study":
        return study(args.root.resolve(), args.work.resolve(), args.cores, args.show_volatile)
    return dry_run(args.root.resolve(), args.work.resolve(), args.configfile)


if __name__ == "__main__":
    sys.exit(main())
