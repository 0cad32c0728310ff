"""serve-model: one load of the tiny model (hf) answers several generation cells over loopback, shared
by cells that attach to it, and failing them at once when it cannot load or dies."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import numpy as np
import polars as pl
import pytest

from cotprobe.backends.base import BackendError
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.serving.client import connect
from cotprobe.serving.leases import count_loads, scope, stop_servers
from cotprobe.serving.protocol import pid_alive, spec_key
from cotprobe.variants import perturb

GEN = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}


def _spec(model_dir, **extra):
    return {"backend": "hf", "path": str(model_dir), "settings": {"device": "cpu"}, "generation": GEN,
            "version": 1, **extra}  # fmt: skip


def _cell(spec, prompts, out, server=None, wait=600, seed=0):
    cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
           "--prompts", str(prompts), "--seed", str(seed), "--out", str(out),
           "--logits-out", str(out.with_suffix(".parquet")), "--threads", "1"]  # fmt: skip
    if server:
        cmd += ["--server-file", str(server), "--server-wait", str(wait)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _rows(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


@pytest.fixture(scope="module")
def prompt_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cells")
    samples = Shapes(n=6, seed=3).prepare(tmp / "data")
    files = {}
    for variant in ("base", "wrong_think", "stop_think"):
        files[variant] = tmp / f"{variant}.jsonl"
        write_jsonl(files[variant], (p.to_dict() for p in perturb(samples, variant, bench="shapes", seed=0)))
    return files


@pytest.fixture(scope="module")
def seed_files(tmp_path_factory):
    """Prompt files of seeds 0 and 1: ``base`` asks every seed the same, ``wrong_think`` does not."""
    tmp = tmp_path_factory.mktemp("seeds")
    samples = Shapes(n=6, seed=3).prepare(tmp / "data")
    files = {}
    for variant in ("base", "wrong_think"):
        for seed in (0, 1):
            files[variant, seed] = tmp / f"{variant}-{seed}.jsonl"
            prompts = perturb(samples, variant, bench="shapes", seed=seed)
            write_jsonl(files[variant, seed], (p.to_dict() for p in prompts))
    return files


def test_cells_share_one_load_and_match_in_process_cells(tiny_model_dir, prompt_files, tmp_path):
    spec = _spec(tiny_model_dir)
    url_file = tmp_path / "server.json"
    log = tmp_path / "server.log"
    cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", "tiny", "--spec", json.dumps(spec),
           "--url-file", str(url_file), "--threads", "1"]  # fmt: skip
    with log.open("w") as fh:
        server = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        # Cells start before the model is loaded (as in a Snakemake group) and wait for it.
        cells = {v: _cell(spec, f, tmp_path / f"served_{v}.jsonl", url_file) for v, f in prompt_files.items()}
        for proc in cells.values():
            _, err = proc.communicate(timeout=600)
            assert proc.returncode == 0, err
            assert "using model server http://127.0.0.1:" in err
        info = json.loads(url_file.read_text())
        assert info["spec_key"] == spec_key(spec) and info["pid"] == server.pid
    finally:
        server.terminate()
        server.wait(timeout=300)  # a bound, not a timing: exits slowly on a loaded CPU
    assert server.returncode == 0 and not url_file.exists()
    text = log.read_text()
    assert text.count("loaded hf backend") == 1 and "server of tiny stopped" in text

    # The served cell's files are the ones an in-process cell writes: one implementation, the same
    # batches and one pinned thread on both sides, so the greedy texts are equal by construction.
    direct = tmp_path / "direct_wrong_think.jsonl"
    proc = _cell(spec, prompt_files["wrong_think"], direct)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert f"generate {direct}: 6/6 prompts (100%)" in err  # the progress line's last update
    served = tmp_path / "served_wrong_think.jsonl"
    assert _rows(served) == _rows(direct)
    a, b = pl.read_parquet(served.with_suffix(".parquet")), pl.read_parquet(direct.with_suffix(".parquet"))
    exact = ["id", "letters", "argmax_letter", "answer_position", "missing_reason"]
    assert a.select(exact).equals(b.select(exact))
    for col in ("probs", "entropy", "p_correct", "p_target"):
        x, y = a[col].explode() if col == "probs" else a[col], b[col].explode() if col == "probs" else b[col]
        np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), atol=1e-6)


def test_a_repeated_greedy_request_is_answered_from_memory_as_it_would_be_computed(
    tiny_model_dir, seed_files, tmp_path
):
    spec, sampled = _spec(tiny_model_dir), _spec(tiny_model_dir, generation={**GEN, "temperature": 1.0})
    url_file = tmp_path / "server.json"
    cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", "tiny", "--spec", json.dumps(spec),
           "--url-file", str(url_file), "--threads", "1"]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def cell(s, variant, seed, out):
        proc = _cell(s, seed_files[variant, seed], tmp_path / out, url_file, seed=seed)
        _, err = proc.communicate(timeout=600)
        assert "using model server" in err, err

    def counts():
        with urllib.request.urlopen(json.loads(url_file.read_text())["url"] + "/memo", timeout=60) as resp:
            return json.loads(resp.read())

    try:
        for seed in (0, 1):
            cell(spec, "base", seed, f"base-{seed}.jsonl")
        # Seed 1's base cell asked what seed 0's did: 6 prompts in 2 batches, then one scoring call.
        assert counts() == {"generate": {"hits": 6, "misses": 6}, "letter_scores": {"hits": 6, "misses": 6}}
        for seed in (0, 1):  # the seeds push different wrong options: nothing shared
            cell(spec, "wrong_think", seed, f"wrong_think-{seed}.jsonl")
        for seed in (0, 1):  # sampled: each seed draws its own
            cell(sampled, "base", seed, f"sampled-{seed}.jsonl")
        after = counts()
        assert after["generate"] == {"hits": 6, "misses": 18}
        assert after["letter_scores"]["hits"] == 6
    finally:
        server.terminate()
        server.wait(timeout=300)

    # What the memory answered is what seed 1's cell computes in a process of its own.
    direct = tmp_path / "direct-base-1.jsonl"
    proc = _cell(spec, seed_files["base", 1], direct, seed=1)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    served = tmp_path / "base-1.jsonl"
    assert _rows(served) == _rows(direct) and {r["seed"] for r in _rows(served)} == {1}
    a, b = pl.read_parquet(served.with_suffix(".parquet")), pl.read_parquet(direct.with_suffix(".parquet"))
    assert a.select("id", "letters", "argmax_letter").equals(b.select("id", "letters", "argmax_letter"))
    np.testing.assert_allclose(a["probs"].explode().to_numpy(), b["probs"].explode().to_numpy(), atol=1e-6)


def test_a_server_that_cannot_load_fails_its_cells_at_once(prompt_files, tmp_path):
    spec = _spec(tmp_path / "no-such-model")
    url_file = tmp_path / "server.json"
    cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", "tiny", "--spec", json.dumps(spec),
           "--url-file", str(url_file)]  # fmt: skip
    server = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert server.returncode != 0
    proc = _cell(spec, prompt_files["base"], tmp_path / "gen.jsonl", url_file)
    _, err = proc.communicate(timeout=600)  # a hang guard, not a speed check
    assert proc.returncode == 2
    assert err.strip().splitlines()[-1].startswith("error: model server for ")
    assert "failed to load" in err and not (tmp_path / "gen.jsonl").exists()


def test_connect_refuses_a_server_of_another_load(tmp_path, tiny_model_dir):
    url_file = tmp_path / "server.json"
    url_file.write_text(json.dumps({"url": "http://127.0.0.1:9", "spec_key": "someother", "pid": 1}))
    with pytest.raises(BackendError, match="is for spec someother"):
        connect(url_file, _spec(tiny_model_dir), wait=1)
    # Sampling settings are per request: they do not change which load a cell may use.
    assert spec_key(_spec(tiny_model_dir)) == spec_key({**_spec(tiny_model_dir), "generation": {"x": 1}})
    assert spec_key(_spec(tiny_model_dir)) != spec_key(_spec(tiny_model_dir, version=2))


# --- shared loads: the first cell of a model spawns its server, later cells attach ---------------


def _shared_cell(spec, prompts, out, root, *, idle=300, model="tiny", share=True):
    cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", model, "--spec", json.dumps(spec),
           "--prompts", str(prompts), "--seed", "0", "--out", str(out),
           "--logits-out", str(out.with_suffix(".parquet")), "--server-root", str(root),
           "--idle-timeout", str(idle), "--server-wait", "600", "--threads", "1",
           "--share-load" if share else "--no-share-load"]  # fmt: skip
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return err


def _server_pids(root):
    return [json.loads(f.read_text())["pid"] for f in root.glob("*/*.json")]


def _wait_gone(pid, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):  # exited (a zombie child of this process counts as gone)
            return True
        time.sleep(0.2)
    return False


def test_concurrent_and_later_cells_share_one_spawned_load(tiny_model_dir, prompt_files, tmp_path):
    spec, root = _spec(tiny_model_dir), tmp_path / "servers"
    try:
        # Two cells at once race to spawn: one spawns, the other attaches (the spawn lock).
        first = [
            _shared_cell(spec, prompt_files[v], tmp_path / f"{v}.jsonl", root)
            for v in ("base", "wrong_think")
        ]
        errs = [_finish(p) for p in first]
        assert sum("started model server" in e for e in errs) == 1, errs
        assert sum("attaching to the model server" in e for e in errs) == 1, errs
        # A later cell finds the idle server still up and attaches too.
        err = _finish(_shared_cell(spec, prompt_files["stop_think"], tmp_path / "stop_think.jsonl", root))
        assert "attaching to the model server" in err
        assert count_loads(root) == {"tiny": 1}
        (pid,) = _server_pids(root)
        ledger = [json.loads(line) for line in (root / "loads.jsonl").read_text().splitlines()]
        assert ledger[0]["spec_key"] == spec_key(spec) and ledger[0]["pid"] == pid
    finally:
        assert stop_servers(root) == 1
    assert _wait_gone(pid) and not list(root.glob("*/*.json"))

    # Served cells write what a cell that loads the model itself writes.
    direct = tmp_path / "direct.jsonl"
    _finish(_shared_cell(spec, prompt_files["wrong_think"], direct, root, share=False))
    assert _rows(tmp_path / "wrong_think.jsonl") == _rows(direct)
    assert count_loads(root) == {"tiny": 1}  # the unshared cell loads in its own process, unrecorded


def test_a_server_exits_when_no_cell_has_used_it_for_its_idle_timeout(tiny_model_dir, prompt_files, tmp_path):
    spec, root = _spec(tiny_model_dir), tmp_path / "servers"
    _finish(_shared_cell(spec, prompt_files["base"], tmp_path / "a.jsonl", root, idle=2))
    (pid,) = _server_pids(root)
    assert _wait_gone(pid, timeout=60)
    assert not list(root.glob("*/*.json"))
    # The next cell of the model starts a new server: a second load, recorded.
    err = _finish(_shared_cell(spec, prompt_files["base"], tmp_path / "b.jsonl", root, idle=2))
    assert "started model server" in err and count_loads(root) == {"tiny": 2}
    assert _rows(tmp_path / "a.jsonl") == _rows(tmp_path / "b.jsonl")
    (pid,) = _server_pids(root)
    assert _wait_gone(pid, timeout=60)


def test_a_retrained_model_at_the_same_path_gets_a_new_load(tiny_model_dir, prompt_files, tmp_path):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    spec, root = _spec(model), tmp_path / "servers"
    key = spec_key(spec)
    try:
        _finish(_shared_cell(spec, prompt_files["base"], tmp_path / "a.jsonl", root))
        cfg = model / "config.json"
        cfg.write_text(cfg.read_text())  # same content, new mtime: a rewritten checkpoint
        assert spec_key(spec) != key
        err = _finish(_shared_cell(spec, prompt_files["base"], tmp_path / "b.jsonl", root))
        assert "started model server" in err and count_loads(root) == {"tiny": 2}
    finally:
        assert stop_servers(root) == 2


def test_a_server_that_cannot_load_fails_its_shared_cells_with_its_error(prompt_files, tmp_path):
    spec, root = _spec(tmp_path / "no-such-model"), tmp_path / "servers"
    proc = _shared_cell(spec, prompt_files["base"], tmp_path / "gen.jsonl", root)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip().splitlines()[-1].startswith("error: model server for ") and "failed to load" in err
    assert not (tmp_path / "gen.jsonl").exists() and count_loads(root) == {}
    (log,) = (root / "logs").glob("tiny.*.log")
    assert "no-such-model" in log.read_text()


# --- a dead server fails its cells at once ---


def _dead_pid():
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_dead_servers_address_file_fails_the_cell_at_once(prompt_files, tmp_path):
    spec = _spec(tmp_path / "model")
    url_file = tmp_path / "server.json"
    # What a server killed after loading leaves behind: its address, nobody listening.
    url_file.write_text(
        json.dumps({"url": "http://127.0.0.1:9", "spec_key": spec_key(spec), "pid": _dead_pid()})
    )
    cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
           "--prompts", str(prompt_files["base"]), "--seed", "0", "--out", str(tmp_path / "gen.jsonl"),
           "--logits-out", str(tmp_path / "gen.parquet"), "--server-file", str(url_file)]  # fmt: skip
    # The default wait (a load's time) is far longer than this timeout: only a dead-process check passes.
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("error: model server for ") and "is not running" in lines[-1], proc.stderr
    assert sum(line.startswith("error:") for line in lines) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "gen.jsonl").exists()


def test_a_cell_waiting_on_a_load_that_dies_fails_at_once(prompt_files, tmp_path):
    """attach: another cell's server is loading the model (the file says so), then dies."""
    spec, root = _spec(tmp_path / "model"), tmp_path / "servers"
    host_dir = root / scope()
    host_dir.mkdir(parents=True)
    loading = "import json, os, sys, time; open(sys.argv[1], 'w').write(json.dumps(" \
              "{'status': 'loading', 'spec_key': sys.argv[2], 'pid': os.getpid()})); time.sleep(3)"  # fmt: skip
    url_file = host_dir / f"{spec_key(spec)}.json"
    server = subprocess.Popen([sys.executable, "-c", loading, str(url_file), spec_key(spec)])
    try:
        deadline = time.monotonic() + 60
        while not url_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
               "--prompts", str(prompt_files["base"]), "--seed", "0", "--out", str(tmp_path / "gen.jsonl"),
               "--logits-out", str(tmp_path / "gen.parquet"), "--server-root", str(root), "--share-load"]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    finally:
        server.kill()
        server.wait()
    assert proc.returncode == 2, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: model server for ") and "while loading the model" in last, proc.stderr


def test_the_wait_for_a_load_is_configurable_and_bounded():
    from cotprobe.cli import build_parser
    from cotprobe.serving.protocol import LOAD_TIMEOUT

    argv = ["generate", "--model", "m", "--spec", "{}", "--prompts", "p", "--seed", "0", "--out", "o",
            "--logits-out", "l"]  # fmt: skip
    assert build_parser().parse_args(argv).server_wait == LOAD_TIMEOUT <= 3600
    assert build_parser().parse_args([*argv, "--server-wait", "42"]).server_wait == 42


def test_each_snakemake_run_has_its_own_id_that_its_jobs_inherit(monkeypatch):
    from cotprobe.workflow import export_run_id

    # setenv first, so that monkeypatch also undoes what export_run_id sets.
    monkeypatch.setenv("COTPROBE_RUN_ID", "an-outer-run")
    run = export_run_id(main_process=True)  # a run started from inside another's job
    assert run != "an-outer-run" and os.environ["COTPROBE_RUN_ID"] == run
    assert export_run_id(main_process=False) == run  # a job re-parsing the Snakefile
    assert export_run_id(main_process=True) != run  # the next run
