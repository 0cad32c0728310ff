"""Keep a finished study's results across an upgrade that only changed the rules' commands.

Snakemake reruns a job whose rule's shell text changed (its code trigger), even when what the job
computes did not. A cotprobe release that rewrites commands and nothing else (its release note
says so) would rerun every cell of a finished study. This records the new commands instead:

    python -m cotprobe.upgrade [the study's snakemake arguments: --configfile, --profile, ...]

It first dry-runs the study with every rerun trigger but the code one. If any job is still due
(a missing output, changed params, inputs or software, newer inputs), it stops and changes nothing:
then the study has work that is not a changed command, and only running it is right. Otherwise it
runs ``snakemake --touch`` (records each job as run under the new commands, running none) and
checks that a plain dry run then has nothing to do.
"""

from __future__ import annotations

import subprocess
import sys

NOTHING_TO_DO = "Nothing to be done"
# Every trigger Snakemake has except "code" (a rule's shell text).
NOT_CODE = ("mtime", "params", "input", "software-env")


def snakemake(*args: str) -> subprocess.CompletedProcess:
    """``snakemake ARGS`` with this interpreter's Snakemake, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args], capture_output=True, text=True, check=False
    )


def _done(proc: subprocess.CompletedProcess, what: str) -> bool:
    if proc.returncode != 0:
        sys.exit(
            f"error: {what} failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}{proc.stderr[-4000:]}"
        )
    return NOTHING_TO_DO in proc.stdout + proc.stderr


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if _done(snakemake("-n", *args), "the dry run"):
        print("nothing to record: no job is due, not even for a changed command")
        return 0
    other = snakemake("-n", "--quiet", "rules", "--rerun-triggers", *NOT_CODE, *args)
    if not _done(other, "the dry run without the code trigger"):
        print(
            "error: jobs are due for reasons other than a changed command (below); nothing was touched."
            " Run the study instead.\n" + (other.stdout + other.stderr).strip(),
            file=sys.stderr,
        )
        return 1
    _done(snakemake("--touch", "--cores", "1", *args), "snakemake --touch")
    if not _done(snakemake("-n", *args), "the dry run after --touch"):
        print("error: jobs are still due after snakemake --touch", file=sys.stderr)
        return 1
    print("recorded the new commands: the finished study is up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
