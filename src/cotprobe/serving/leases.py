"""Shared loads in the workflow: one server per model and host, held by the cells that use it.

The first cell of a model on a host spawns a detached server (``attach``); later cells of that model
on that host attach to it. No DAG edge is involved, so no cell reruns because a server started.
State lives under ``.cotprobe/model_servers/`` in the working directory:

* ``<host>/<key>.json`` (``<host>.slurm<jobid>/`` inside a SLURM job): the server's address file
  (``key`` = ``spec_key``; see ``cotprobe.serving.protocol``);
* ``<host>/<key>.lease``: every attached cell holds a shared ``flock`` on it for its lifetime (the
  kernel drops it when the cell dies, even by SIGKILL); the server exits once no cell has held it
  for ``idle_timeout`` seconds;
* ``<host>/spawn.lock``: serialises spawning and idle exits on the host;
* ``loads.jsonl`` (one line per model load: the number the study pays) and ``logs/``.

A cell of a GPU model that has to spawn first stops the idle servers (no lease held) of other
models on the host, so an idle server never holds GPU memory that a new load needs. On a cluster
the cells of a model share a load when they run in one job (a Snakemake group job; see the SLURM
profile); a server dies with its job.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from cotprobe.backends.base import BackendError
from cotprobe.serving.client import RemoteBackend, connect
from cotprobe.serving.protocol import LOAD_TIMEOUT, live_pid, pid_alive, read_info, spec_key

log = logging.getLogger(__name__)

SERVER_ROOT = Path(".cotprobe/model_servers")


def scope() -> str:
    """Which cells may share a server: those on this host, and within one SLURM job when in one
    (a server lives on its job's GPUs and dies with the job, so another job must not attach to it
    or stop it)."""
    job = os.environ.get("SLURM_JOB_ID")
    return socket.gethostname() + (f".slurm{job}" if job else "")


class Lease:
    """A cell's hold on a shared server: a shared ``flock`` the kernel drops when the cell dies."""

    def __init__(self, lease_file: Path):
        self._fh = lease_file.open("a")
        fcntl.flock(self._fh, fcntl.LOCK_SH)

    def release(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def lease_free(lease_file: Path) -> bool:
    """True when no cell holds a lease on ``lease_file`` (an exclusive lock can be taken)."""
    with lease_file.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def _stop_if_idle(url_file: Path, reason: str) -> bool:
    """SIGTERM the server ``url_file`` names if it runs and no cell holds its lease, and wait (up to
    120 s) until it has exited (its memory is free). The caller holds the host's spawn lock, so no
    cell can attach meanwhile. Returns whether it stopped one."""
    info = read_info(url_file)
    pid = live_pid(info)
    if pid is None:
        return False
    with url_file.with_suffix(".lease").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a cell uses it
        log.info("stopping the idle server of %s (pid %s) %s", info.get("model"), pid, reason)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True


def stop_idle_servers(host_dir: Path, keep: str) -> None:
    """Stop the servers of other models on this host that no cell uses (frees their GPU memory)."""
    for url_file in sorted(host_dir.glob("*.json")):
        if url_file.stem != keep:
            _stop_if_idle(url_file, "to free its GPUs")


def attach(
    model_id: str,
    spec: dict[str, Any],
    *,
    root: str | Path = SERVER_ROOT,
    idle_timeout: float = 300.0,
    threads: int = 0,
    gpus: int = 0,
    wait: float = LOAD_TIMEOUT,
) -> tuple[RemoteBackend, Lease]:
    """A client of this host's shared server for ``spec``, spawned first if none runs.

    Keep the returned lease until the cell is done (the server outlives no cell); see the module
    docstring for the files under ``root``.

    Raises:
        BackendError: The server could not be started or failed to load the model.
    """
    root = Path(root)
    key = spec_key(spec)
    host_dir = root / scope()
    host_dir.mkdir(parents=True, exist_ok=True)
    url_file, lease_file = host_dir / f"{key}.json", host_dir / f"{key}.lease"
    lease = Lease(lease_file)  # before looking: from now on the server cannot go idle under us
    try:
        with (host_dir / "spawn.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = live_pid(read_info(url_file))
            if pid is None:
                if gpus > 0:
                    stop_idle_servers(host_dir, keep=key)
                name = re.sub(r"[^\w.-]+", "_", model_id)  # a judge's model id may be a path
                log_file = (
                    root / "logs" / f"{name}.{socket.gethostname()}.{int(time.time())}.{os.getpid()}.log"
                )
                log_file.parent.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", model_id,
                       "--spec", json.dumps(spec), "--url-file", str(url_file), "--lease-file", str(lease_file),
                       "--idle-timeout", str(idle_timeout), "--ledger", str(root / "loads.jsonl"),
                       "--threads", str(threads)]  # fmt: skip
                with log_file.open("w") as out:
                    # Own session: the server outlives this cell (and a Ctrl-C aimed at it).
                    proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                # Hold the spawn lock until the server has named itself in the file (its first act),
                # so no other cell of the model can start a second one.
                deadline = time.monotonic() + 120
                while (read_info(url_file) or {}).get("pid") != proc.pid:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise BackendError(f"model server for {model_id} did not start; see {log_file}")
                    time.sleep(0.05)
                log.info("started model server pid %d for %s (log: %s)", proc.pid, model_id, log_file)
            else:
                log.info("attaching to the model server pid %s of %s", pid, model_id)
        return connect(url_file, spec, wait=wait), lease
    except BaseException:
        lease.release()
        raise


def stop_servers(root: str | Path = SERVER_ROOT, *, run: str | None = None) -> int:
    """Stop the idle shared servers (no cell holds a lease) of this host (and SLURM job) under ``root``
    that run ``run`` started (every idle one when ``run`` is None); returns how many.

    A Snakemake run's end calls this with its own run id (``$COTPROBE_RUN_ID``): a server another run
    started, or one a cell still uses, is left alone (it exits after its idle timeout).
    """
    host_dir = Path(root) / scope()
    if not host_dir.is_dir():
        return 0
    n = 0
    with (host_dir / "spawn.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # no cell attaches between the lease check and the SIGTERM
        for url_file in sorted(host_dir.glob("*.json")):
            if run is None or (read_info(url_file) or {}).get("run") == run:
                n += _stop_if_idle(url_file, "at the end of its run" if run else "")
    return n


def count_loads(root: str | Path = SERVER_ROOT) -> dict[str, int]:
    """Model loads recorded in ``root/loads.jsonl``, by model."""
    ledger = Path(root) / "loads.jsonl"
    counts: dict[str, int] = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            model = json.loads(line)["model"]
            counts[model] = counts.get(model, 0) + 1
    return counts
