"""VLLMBackend for real: vLLM's CPU build in its own venv (``make vllm-env``) on the tiny model.

The tests drive ``.venv-vllm/bin/python -m cotprobe`` through subprocesses, as Snakemake does:
one in-process ``generate`` cell (greedy), then four cells (greedy again, sampled with seeds 0, 0,
1) sharing one load: the first starts this host's ``serve-model`` process for the model, the others
attach, as in the workflow. So the whole module pays two engine starts. They check the letter log-probabilities against a
transformers forward pass (this venv's HF backend), that pre-fills are continued (greedy texts and
prompt lengths equal transformers'), seeded sampling, and the generation file format. The
throughput script's CPU smoke run (two more engine starts) is no test: ``perf/vllm_throughput.py``
checks itself (exit status 3 when a phase hangs at exit or the two sides decode unequal token counts).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from dataclasses import fields
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import complete, make_generation
from cotprobe.io import write_jsonl
from cotprobe.judges.llm import LLMJudge, render
from cotprobe.parsing import parse_response
from cotprobe.records import Generation, load_generations
from cotprobe.serving.leases import count_loads, stop_servers

ROOT = Path(__file__).resolve().parents[3]
VLLM_PYTHON = Path(os.environ.get("COTPROBE_VLLM_PYTHON", ROOT / ".venv-vllm/bin/python"))
PREFILLS = ("", "<think>", "<think>The answer is B. But I think ")
GREEDY = {"max_new_tokens": 8, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}
SAMPLED = {**GREEDY, "temperature": 1.0, "top_p": 0.95}
JUDGE_SAMPLING = {**GREEDY, "max_new_tokens": 12, "batch_size": 3}
SETTINGS = {"dtype": "float32", "max_model_len": 1024, "enforce_eager": True, "max_num_seqs": 8}


def _env() -> dict[str, str]:
    # Offline, no sampler torch.compile (9-23 s per engine on CPU), the smallest KV cache (1 GiB).
    return dict(
        os.environ,
        PYTHONPATH=str(ROOT / "src"),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TORCH_COMPILE_DISABLE="1",
        VLLM_CPU_KVCACHE_SPACE="1",
    )


def _spec(model_dir, sampling) -> str:
    spec = {
        "backend": "vllm",
        "path": str(model_dir),
        "settings": SETTINGS,
        "generation": sampling,
        "version": 1,
    }
    return json.dumps(spec)


def _generate(tmp: Path, name: str, model_dir, prompts: Path, sampling, seed=0, servers=None) -> Path:
    out = tmp / f"{name}.jsonl"
    cmd = [str(VLLM_PYTHON), "-m", "cotprobe", "generate", "--model", "tiny-vllm",
           "--spec", _spec(model_dir, sampling), "--prompts", str(prompts), "--seed", str(seed),
           "--out", str(out), "--logits-out", str(out.with_suffix(".parquet"))]  # fmt: skip
    if servers:  # this host's shared server of the model: the first such cell starts it
        cmd += ["--share-load", "--server-root", str(servers), "--server-wait", "1800"]
    proc = subprocess.run(cmd, check=False, env=_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _judge(tmp: Path, name: str, model_dir, prompts: Path, generations: Path, servers=None) -> Path:
    """An LLM judge cell on vLLM (the judge's text path, ``complete_texts``)."""
    out = tmp / f"{name}.jsonl"
    args = {"backend": "vllm", "path": str(model_dir), "settings": SETTINGS, "sampling": JUDGE_SAMPLING}
    cmd = [str(VLLM_PYTHON), "-m", "cotprobe", "judge", "--judge", "vllm-llm",
           "--spec", json.dumps({"kind": "llm", "args": args}), "--prompts", str(prompts),
           "--generations", str(generations), "--out", str(out)]  # fmt: skip
    if servers:
        cmd += ["--share-load", "--server-root", str(servers), "--server-wait", "1800"]
    proc = subprocess.run(cmd, check=False, env=_env(), capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out


def _thinking_generations(prompts) -> list[Generation]:
    """Generations with a closed think, so the judge is asked about every one."""
    return [
        make_generation(p, model_id="tiny-vllm", completion=f"<think>It is {p.options[p.answer]}.</think>"
                        f"<answer>{p.answer}</answer>", prompt_tokens=1, completion_tokens=1,
                        seconds=0.0, finish_reason="stop")
        for p in prompts
    ]  # fmt: skip


def _without_seconds(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        r.pop("seconds")
    return rows


@pytest.fixture(scope="module")
def vllm_python() -> Path:
    if not VLLM_PYTHON.exists():
        pytest.fail(
            f"no vLLM environment at {VLLM_PYTHON}: run `make vllm-env` (or set COTPROBE_VLLM_PYTHON)"
        )
    return VLLM_PYTHON


@pytest.fixture(scope="module")
def prompts(make_prompt):
    # Mixed pre-fills (incl. a trailing space), option counts and lengths.
    return [make_prompt(i, prefill=PREFILLS[i % 3], n_options=4 + i % 2, long=i % 4 == 3) for i in range(6)]


@pytest.fixture(scope="module")
def run(vllm_python, tiny_model_dir, prompts, tmp_path_factory):
    """Every vLLM process of the module: a server (started first) and the cells."""
    tmp = tmp_path_factory.mktemp("vllm")
    prompts_file = tmp / "prompts.jsonl"
    write_jsonl(prompts_file, (p.to_dict() for p in prompts))
    # One after the other: each vLLM CPU engine binds its OpenMP threads to the same core.
    files = {"greedy": _generate(tmp, "greedy", tiny_model_dir, prompts_file, GREEDY)}
    servers = tmp / "servers"
    try:
        for name, sampling, seed in (
            ("served_greedy", GREEDY, 0),
            ("sampled_0", SAMPLED, 0),
            ("sampled_0_again", SAMPLED, 0),
            ("sampled_1", SAMPLED, 1),
        ):
            files[name] = _generate(tmp, name, tiny_model_dir, prompts_file, sampling, seed, servers=servers)
        # An LLM judge of the same checkpoint attaches to the generation cells' server (no new load).
        thinking = tmp / "thinking.jsonl"
        write_jsonl(thinking, (g.to_dict() for g in _thinking_generations(prompts)))
        files["thinking"] = thinking
        files["served_judge"] = _judge(tmp, "served_judge", tiny_model_dir, prompts_file, thinking, servers)
    finally:
        pids = [json.loads(f.read_text())["pid"] for f in servers.glob("*/*.json")]
        stop_servers(servers)
        for pid in pids:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.2)
    files["servers"] = servers
    return files


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return BACKENDS.get("hf")(str(tiny_model_dir), device="cpu")


# Fields that follow from the generated tokens: compared where the reference's margins are clear.
FROM_COMPLETION = ("completion", "text", "think", "answer_text", "answer_letter", "parse_status",
                   "completion_tokens", "finish_reason")  # fmt: skip


@pytest.fixture(scope="module")
def reference(hf, prompts, greedy_reference):
    refs = greedy_reference(hf, prompts, GREEDY["max_new_tokens"])
    # The parity checks compare something: most completions are clear to their last token.
    assert sum(r.all_clear for r in refs) >= len(refs) // 2, refs
    return refs


def test_letter_logprobs_match_a_transformers_forward_pass(run, prompts, hf):
    gens = load_generations(str(run["greedy"]))
    ours = pl.read_parquet(run["greedy"].with_suffix(".parquet")).to_dicts()
    ref = hf.letter_scores(
        prompts, [Generation(**json.loads(x)) for x in run["greedy"].read_text().splitlines()]
    )
    assert len(gens) == len(ours) == len(ref) == len(prompts)
    for prompt, v, h in zip(prompts, ours, ref):
        assert v["id"] == h.id == prompt.id and v["letters"] == h.letters == list(prompt.options)
        assert v["answer_position"] == h.answer_position
        assert math.isclose(sum(v["probs"]), 1.0, abs_tol=1e-9)
        # Log-probabilities renormalised over the letters, per letter.
        np.testing.assert_allclose(np.log(v["probs"]), np.log(h.probs), atol=0.02, rtol=0)
        assert v["argmax_letter"] == h.argmax_letter
    # Not a flat distribution everywhere: the scores depend on the prompt (image, text, pre-fill).
    spread = np.ptp([v["probs"][0] for v in ours])
    assert spread > 1e-3


def test_prefill_is_continued_like_transformers(run, prompts, hf, reference):
    ours = load_generations(str(run["greedy"]))
    ref = hf.generate(prompts, model_id="tiny-vllm", seed=0, sampling=GREEDY)
    for prompt, v, h, r in zip(prompts, ours, ref, reference):
        assert v.prefill == prompt.prefill and v.text == prompt.prefill + v.completion
        # Same prompt tokens (pre-fill continued, no new assistant turn) and the same greedy text
        # wherever transformers' choice is clear of a near-tie.
        assert v.prompt_tokens == h.prompt_tokens
        r.assert_agrees(v.completion, prompt.id)
        if r.all_clear:
            assert (v.completion_tokens, v.finish_reason) == (h.completion_tokens, h.finish_reason)
    with_prefill = [v.prompt_tokens for p, v in zip(prompts, ours) if p.prefill and len(p.options) == 4]
    assert with_prefill and min(with_prefill) > ours[0].prompt_tokens


def test_seeded_sampling_is_reproducible(run):
    first, again, other = (_without_seconds(run[k]) for k in ("sampled_0", "sampled_0_again", "sampled_1"))
    assert first == again
    assert [r["completion"] for r in first] != [r["completion"] for r in other]
    greedy = _without_seconds(run["greedy"])
    assert [r["completion"] for r in first] != [r["completion"] for r in greedy]


def test_served_cell_equals_the_in_process_cell(run, reference):
    # vLLM batches a server's requests as they arrive, so near-ties may break the other way: the
    # texts are compared where the reference is clear, everything else exactly.
    served, direct = _without_seconds(run["served_greedy"]), _without_seconds(run["greedy"])
    assert len(served) == len(direct) == len(reference)
    for s, d, r in zip(served, direct, reference):
        assert {k: v for k, v in s.items() if k not in FROM_COMPLETION} == {
            k: v for k, v in d.items() if k not in FROM_COMPLETION
        }
        r.assert_agrees(s["completion"], s["id"])
        r.assert_agrees(d["completion"], d["id"])
        if r.all_clear:
            assert s == d
    # Letter scores are read after each cell's own text: equal where the texts are.
    clear = pl.Series([r.all_clear for r in reference])
    a = pl.read_parquet(run["greedy"].with_suffix(".parquet")).filter(clear)
    b = pl.read_parquet(run["served_greedy"].with_suffix(".parquet")).filter(clear)
    assert a.height >= len(reference) // 2
    assert a.drop("probs").equals(b.drop("probs"))
    np.testing.assert_allclose(a["probs"].explode().to_numpy(), b["probs"].explode().to_numpy(), atol=1e-6)
    # The four served cells (two sampling settings) and the judge cell paid one load; the server
    # stopped cleanly.
    assert count_loads(run["servers"]) == {"tiny-vllm": 1}
    (log,) = (run["servers"] / "logs").glob("tiny-vllm.*.log")
    text = log.read_text()
    assert text.count("loaded vllm backend") == 1 and "server of tiny-vllm stopped" in text
    assert not list(run["servers"].glob("*/*.json"))


def test_an_llm_judge_runs_on_vllm_in_process_and_shared(run, prompts, tiny_model_dir, hf):
    """The judge's text path on vLLM: the shared server's replies equal an in-process judge's (one
    more engine start), and the prompts and greedy replies are transformers' (``hf.complete_texts``)."""
    tmp = run["served_judge"].parent
    direct = _judge(tmp, "direct_judge", tiny_model_dir, tmp / "prompts.jsonl", run["thinking"])
    served = [json.loads(line) for line in run["served_judge"].read_text().splitlines()]
    alone = [json.loads(line) for line in direct.read_text().splitlines()]
    assert [v["id"] for v in served] == [p.id for p in prompts]
    # Every generation has a think, so every verdict carries the judge's reply.
    assert all(v["judge_output"] for v in served)
    assert served == alone
    judge = LLMJudge(
        backend="hf", path=str(tiny_model_dir), settings={"device": "cpu"}, sampling=JUDGE_SAMPLING
    )
    texts = [render(judge.template, p, g) for p, g in zip(prompts, _thinking_generations(prompts))]
    theirs = complete(hf, texts, seed=0, sampling=JUDGE_SAMPLING)
    same = [v["judge_output"] == t.text for v, t in zip(served, theirs)]
    # Near-ties of a random model may break the other way in float32; most replies agree exactly.
    assert sum(same) >= len(same) // 2, (served, theirs)


def test_generation_file_format(run, prompts):
    names = [f.name for f in fields(Generation)]
    for key in ("greedy", "sampled_0"):
        rows = [json.loads(line) for line in run[key].read_text().splitlines()]
        assert [r["id"] for r in rows] == [p.id for p in prompts]
        for prompt, r in zip(prompts, rows):
            assert list(r) == names
            assert (r["model"], r["bench"], r["variant"], r["seed"]) == ("tiny-vllm", "shapes", "test", 0)
            parsed = parse_response(r["text"], prompt.options)
            assert (r["think"], r["answer_text"], r["answer_letter"], r["parse_status"], r["answer_rule"],
                    r["parse_reason"]) == tuple(parsed)  # fmt: skip
            assert r["finish_reason"] in ("stop", "length") and 1 <= r["completion_tokens"] <= 8
            assert r["finish_reason"] == "stop" or r["completion_tokens"] == 8
            assert r["prompt_tokens"] > 16 and r["seconds"] > 0 and r["delivery"] == "prefill"
        logits = pl.read_parquet(run[key].with_suffix(".parquet"))
        assert logits.columns == ["id", "letters", "probs", "entropy", "p_correct", "p_target",
                                  "argmax_letter", "answer_position", "missing_reason", "letter_set"]  # fmt: skip
        assert logits["missing_reason"].is_null().all() and logits["id"].to_list() == [p.id for p in prompts]
        assert logits["letter_set"].to_list() == ["options"] * len(prompts)
    assert not list(run["greedy"].parent.glob("*.part"))


def test_vllm_is_not_imported_by_the_package(vllm_python):
    # In the venv that has vLLM (and torch): importing them would be possible, so not doing it is checked.
    code = (
        "import importlib.util, sys; assert importlib.util.find_spec('vllm') and importlib.util.find_spec('torch');"
        "import cotprobe.cli, cotprobe.backends, cotprobe.backends.vllm;"
        "from cotprobe.backends import BACKENDS; BACKENDS.get('vllm'); BACKENDS.version('vllm');"
        "print('vllm' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([str(vllm_python), "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


# ---- the model settings (one more engine start): the same names reach vLLM as reach transformers ----
V2 = "2" * 40


def test_model_settings_reach_vllm_as_they_reach_transformers(
    vllm_python, make_prompt, tmp_path, monkeypatch
):
    """A hub id at ``revision: v2`` (other weights than ``main``) in an offline hub cache, with the
    image size, a system turn, a chat-template variable, the checkpoint's generation config and a stop
    string: vLLM's prompt lengths and letter log-probabilities equal transformers' under the same
    settings, and its replies end at the stop string."""
    import huggingface_hub.constants as hub

    from cotprobe.models.tiny import build_tiny_model

    repo = tmp_path / "hub" / "models--cotprobe--tiny"
    snapshot = build_tiny_model(repo / "snapshots" / V2, seed=1)
    config = json.loads((snapshot / "generation_config.json").read_text())
    (snapshot / "generation_config.json").write_text(json.dumps({**config, "repetition_penalty": 1.3}))
    (repo / "refs").mkdir()
    (repo / "refs" / "v2").write_text(V2)
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    prompts = [make_prompt(i, prefill=PREFILLS[i % 3]) for i in range(4)]
    shared = {"revision": "v2", "processor_kwargs": {"min_pixels": 3136, "max_pixels": 6272},
              "system_prompt": "You grade answers.", "chat_template_kwargs": {"add_vision_id": True},
              "use_model_generation_config": True}  # fmt: skip
    hf = BACKENDS.get("hf")("cotprobe/tiny", device="cpu", **shared)
    plain = BACKENDS.get("hf")("cotprobe/tiny", device="cpu", revision="v2")
    # The stop string: the letter the model writes most often.
    texts = "".join(g.completion for g in hf.generate(prompts, model_id="t", seed=0, sampling=GREEDY))
    stop = max((c for c in set(texts) if c.isalpha()), key=texts.count)
    hf_stop = BACKENDS.get("hf")("cotprobe/tiny", device="cpu", stop=stop, **shared)
    ref = hf_stop.generate(prompts, model_id="t", seed=0, sampling=GREEDY)

    prompts_file = tmp_path / "prompts.jsonl"
    write_jsonl(prompts_file, (p.to_dict() for p in prompts))
    spec = {"backend": "vllm", "path": "cotprobe/tiny", "settings": {**SETTINGS, **shared, "stop": [stop]},
            "generation": GREEDY, "version": 1}  # fmt: skip
    out = tmp_path / "settings.jsonl"
    cmd = [str(vllm_python), "-m", "cotprobe", "generate", "--model", "tiny-vllm", "--spec", json.dumps(spec),
           "--prompts", str(prompts_file), "--seed", "0", "--out", str(out),
           "--logits-out", str(out.with_suffix(".parquet"))]  # fmt: skip
    env = {**_env(), "HF_HUB_CACHE": str(tmp_path / "hub")}
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-4000:]
    gens = load_generations(str(out))

    # Same image size, system turn and template variable: the same prompt tokens as transformers',
    # and not the defaults' (12 image tokens fewer, the system turn and "Picture 1: " added).
    assert [g.prompt_tokens for g in gens] == [g.prompt_tokens for g in ref]
    defaults = plain.generate(prompts, model_id="t", seed=0, sampling=GREEDY)
    assert all(g.prompt_tokens != d.prompt_tokens for g, d in zip(gens, defaults))
    # Replies end at the first stop string, which stays in the text.
    for g in gens:
        at = g.completion.find(stop)
        assert at < 0 or (
            g.completion.endswith(stop) and at == len(g.completion) - 1 and g.finish_reason == "stop"
        )
    assert any(g.finish_reason == "stop" and g.completion.endswith(stop) for g in gens)
    # The v2 weights, scored at the same points: transformers' letter log-probabilities.
    ours = pl.read_parquet(out.with_suffix(".parquet")).to_dicts()
    theirs = hf.letter_scores(prompts, gens)
    for v, h in zip(ours, theirs):
        np.testing.assert_allclose(np.log(v["probs"]), np.log(h.probs), atol=0.02, rtol=0)
    other = plain.letter_scores(prompts, gens)  # same weights, default settings: other scores
    assert any(not np.allclose(v["probs"], o.probs, atol=1e-3) for v, o in zip(ours, other))
