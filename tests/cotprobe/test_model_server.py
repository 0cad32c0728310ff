"""serve-model: one load of the tiny model (hf) answers several generation cells over loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import polars as pl
import pytest

from cotprobe.backends.base import BackendError
from cotprobe.benchmarks.shapes import Shapes
from cotprobe.io import write_jsonl
from cotprobe.model_server import connect, spec_key
from cotprobe.variants import perturb

GEN = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}


def _spec(model_dir, **extra):
    return {"backend": "hf", "path": str(model_dir), "settings": {"device": "cpu"}, "generation": GEN,
            "version": 1, **extra}  # fmt: skip


def _cell(spec, prompts, out, server=None, wait=600):
    cmd = [sys.executable, "-m", "cotprobe", "generate", "--model", "tiny", "--spec", json.dumps(spec),
           "--prompts", str(prompts), "--seed", "0", "--out", str(out),
           "--logits-out", str(out.with_suffix(".parquet"))]  # fmt: skip
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
        server.wait(timeout=30)
    assert server.returncode == 0 and not url_file.exists()
    text = log.read_text()
    assert text.count("loaded hf backend") == 1 and "server of tiny stopped" in text

    # The served cell's files are the ones an in-process cell writes (floats up to thread-count noise).
    direct = tmp_path / "direct_wrong_think.jsonl"
    proc = _cell(spec, prompt_files["wrong_think"], direct)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    served = tmp_path / "served_wrong_think.jsonl"
    assert _rows(served) == _rows(direct)
    a, b = pl.read_parquet(served.with_suffix(".parquet")), pl.read_parquet(direct.with_suffix(".parquet"))
    exact = ["id", "letters", "argmax_letter", "answer_position", "missing_reason"]
    assert a.select(exact).equals(b.select(exact))
    for col in ("probs", "entropy", "p_correct", "p_target"):
        x, y = a[col].explode() if col == "probs" else a[col], b[col].explode() if col == "probs" else b[col]
        np.testing.assert_allclose(x.to_numpy(), y.to_numpy(), atol=1e-6)


def test_a_server_that_cannot_load_fails_its_cells_at_once(prompt_files, tmp_path):
    spec = _spec(tmp_path / "no-such-model")
    url_file = tmp_path / "server.json"
    cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", "tiny", "--spec", json.dumps(spec),
           "--url-file", str(url_file)]  # fmt: skip
    server = subprocess.run(cmd, check=False, capture_output=True, text=True)
    assert server.returncode != 0
    t0 = time.monotonic()
    proc = _cell(spec, prompt_files["base"], tmp_path / "gen.jsonl", url_file)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and time.monotonic() - t0 < 60
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
