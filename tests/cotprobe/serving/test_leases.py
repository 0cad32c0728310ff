"""Shared servers: leases keep a server up, idle ones stop for a GPU load or at their run's end."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from cotprobe.serving.leases import Lease, attach, scope, stop_idle_servers, stop_servers
from cotprobe.serving.protocol import pid_alive

GEN = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}


def _wait_gone(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_a_gpu_cell_stops_idle_servers_of_other_models_but_not_busy_ones(tmp_path):
    host = tmp_path / "host"
    host.mkdir()
    sleepers = {}
    for key in ("idle", "busy"):
        sleepers[key] = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
        (host / f"{key}.json").write_text(json.dumps({"pid": sleepers[key].pid, "model": key}))
    lease = Lease(host / "busy.lease")
    try:
        stop_idle_servers(host, keep="new")
        assert sleepers["idle"].wait(timeout=300) == -15
        assert sleepers["busy"].poll() is None
    finally:
        lease.release()
        for p in sleepers.values():
            p.kill()
            p.wait()


def test_inside_a_slurm_job_servers_are_the_jobs_own(monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    host = scope()
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    assert scope() == f"{host}.slurm42"


def _dummy(version):
    return {"backend": "dummy", "path": "", "settings": {}, "generation": GEN, "version": version}


def _answers(url):
    import urllib.request

    try:
        with urllib.request.urlopen(url + "/health", timeout=10) as resp:
            return resp.status == 200
    except OSError:
        return False


def test_a_runs_end_stops_only_the_idle_servers_it_started(tmp_path, monkeypatch):
    root = tmp_path / "servers"
    monkeypatch.setenv("COTPROBE_RUN_ID", "run-a")
    busy, busy_lease = attach("busy", _dummy(1), root=root)  # a cell of run A still uses it
    _, lease = attach("idle", _dummy(2), root=root)
    lease.release()  # run A's cell is done
    monkeypatch.setenv("COTPROBE_RUN_ID", "run-b")
    _, lease = attach("other", _dummy(3), root=root)
    lease.release()
    info = {i["model"]: i for i in (json.loads(f.read_text()) for f in (root / scope()).glob("*.json"))}
    pids = {model: i["pid"] for model, i in info.items()}
    assert {i["run"] for i in info.values()} == {"run-a", "run-b"}
    try:
        # Run B, in the same directory with other targets, ends first: only its own idle server stops.
        assert stop_servers(root, run="run-b") == 1
        assert _wait_gone(pids["other"], timeout=60)
        assert all(pid_alive(pids[m]) for m in ("busy", "idle")) and _answers(busy.path)
        # Run A's end stops its idle server and leaves the one its cell holds a lease on.
        assert stop_servers(root, run="run-a") == 1
        assert _wait_gone(pids["idle"], timeout=60)
        assert _answers(busy.path)
    finally:
        busy_lease.release()
        stop_servers(root)
    assert _wait_gone(pids["busy"], timeout=60)
