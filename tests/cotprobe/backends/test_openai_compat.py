"""OpenAIBackend against a real server on loopback (cotprobe.serving.openai_server, the tiny model) and scripted fakes.

The real server checks the wire format end to end: pre-fill continuation, letter scores equal to
the transformers backend's, the fallback delivery. Small stdlib servers that answer from a script
check what a real server will not do on demand: 429/500 then 200, a permanent 401 that quotes
the key, a slow answer, no log-probabilities, and the request bodies the backend sends.
"""

from __future__ import annotations

import json
import logging
import math
import re
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import openai  # noqa: F401  (a missing dependency must fail, not skip)
import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.openai_compat import FALLBACK_INSTRUCTION, APIRequestError, OpenAIBackend, _retry_after

GREEDY = {"max_new_tokens": 6, "temperature": 0.0, "top_p": 1.0, "batch_size": 4}
PREFILLS = ("", "<think>", "<think>The answer is B. But I think")
SECRET = "sk-cotprobe-test-0123456789abcdef"
FAST = {"backoff": 0.01, "max_backoff": 0.5}


# ------------------------------------------------------------------ the real server (tiny model)
@pytest.fixture(scope="module")
def server_url(tiny_model_dir):
    cmd = [sys.executable, "-m", "cotprobe.serving.openai_server", "--model-path", str(tiny_model_dir)]
    cmd += ["--port", "0"]
    cmd += ["--served-model-name", "tiny", "--device", "cpu", "--max-logprobs", "-1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()  # written once the model is loaded and the port bound
        assert line.startswith("serving tiny on http://127.0.0.1:"), line
        yield line.split(" on ", 1)[1].strip()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def prompts(make_prompt):
    return [make_prompt(i, prefill=PREFILLS[i % 3], n_options=4 + i % 2) for i in range(4)]


@pytest.fixture(scope="module")
def hf(tiny_model_dir):
    return BACKENDS.get("hf")(str(tiny_model_dir), device="cpu")


@pytest.fixture(scope="module")
def api(server_url):
    return OpenAIBackend("tiny", base_url=server_url, top_logprobs=1000, max_concurrency=4)


@pytest.fixture(scope="module")
def api_greedy(api, prompts):
    return api.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)


def test_registered_and_validated():
    assert BACKENDS.get("openai") is OpenAIBackend
    with pytest.raises(ValueError, match="prefill_mode"):
        OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", prefill_mode="nope")


def test_server_lists_the_model(server_url):
    from openai import OpenAI

    client = OpenAI(api_key="EMPTY", base_url=server_url, max_retries=0)
    assert [m.id for m in client.models.list().data] == ["tiny"]


def test_generate_continues_the_prefill_like_transformers(api_greedy, hf, prompts, greedy_reference):
    # The server answers in padded batches, the reference one prompt at a time: the greedy texts
    # are compared wherever the reference's choice is clear of a near-tie.
    ref = hf.generate(prompts, model_id="tiny", seed=0, sampling={**GREEDY, "batch_size": 1})
    clear = greedy_reference(hf, prompts, GREEDY["max_new_tokens"])
    assert sum(c.all_clear for c in clear) >= len(clear) // 2, clear
    for g, r, c, p in zip(api_greedy, ref, clear, prompts):
        assert (g.id, g.prefill, g.delivery, g.cost_usd) == (p.id, p.prefill, "prefill", None)
        assert r.completion == c.text  # the reference is transformers' own greedy answer
        c.assert_agrees(g.completion, p.id)
        assert g.text == p.prefill + g.completion and g.prompt_tokens == r.prompt_tokens
        if c.all_clear:
            assert (g.completion_tokens, g.finish_reason) == (r.completion_tokens, r.finish_reason)


def test_server_echo_starts_with_the_prefill(server_url, api, prompts, hf, greedy_reference):
    from openai import OpenAI

    client = OpenAI(api_key="EMPTY", base_url=server_url, max_retries=0)
    body = api._body(prompts[2], prompts[2].prefill, fallback=False)
    extra = {**body.pop("extra_body"), "echo": True}
    reply = client.chat.completions.create(**body, max_tokens=6, temperature=0, extra_body=extra)
    content, prefill = reply.choices[0].message.content, prompts[2].prefill
    assert prefill and content.startswith(prefill)
    (clear,) = greedy_reference(hf, prompts[2:3], 6)
    clear.assert_agrees(content[len(prefill) :])


def test_letter_scores_match_transformers(api, api_greedy, hf, prompts):
    scores = api.letter_scores(prompts, api_greedy)
    ref = hf.letter_scores(prompts, api_greedy)
    for s, r, p in zip(scores, ref, prompts):
        assert s.missing_reason is None and s.letters == list(p.options)
        assert math.isclose(sum(s.probs), 1.0, abs_tol=1e-9)
        assert s.probs == pytest.approx(r.probs, abs=1e-5)
        assert (s.answer_position, s.argmax_letter) == (r.answer_position, r.argmax_letter)


def test_fallback_delivery_on_the_real_server(server_url, prompts):
    api = OpenAIBackend("tiny", base_url=server_url, prefill_mode="fallback")
    gens = api.generate(prompts, model_id="tiny", seed=0, sampling=GREEDY)
    for g, p in zip(gens, prompts):
        assert g.prefill == p.prefill
        if not p.prefill:
            assert g.delivery == "prefill" and g.text == g.completion
        elif g.delivery == "fallback":
            assert g.text == p.prefill + g.completion
        else:  # the reply did not begin with the pre-fill: keep the model's own text, prepend nothing
            assert g.delivery == "fallback_ignored" and g.text == g.completion
    # The random tiny model never repeats the pre-fill it is asked for.
    assert [g.delivery for g in gens] == ["prefill", "fallback_ignored", "fallback_ignored", "prefill"]
    scores = api.letter_scores(prompts, gens)
    assert all(s.missing_reason and "fallback" in s.missing_reason and s.probs == [] for s in scores)
    assert all(math.isnan(s.entropy) and math.isnan(s.p_correct) for s in scores)


def test_text_only_chat_matches_transformers(api, hf):
    """The text path LLM judges use: the same greedy reply over HTTP as in-process."""
    from cotprobe.backends.base import complete

    texts = ["Which option does this reasoning settle on? Verdict:", "so option B.\nAnswer with a letter."]
    over_http = complete(api, texts, seed=0, sampling=GREEDY)
    in_process = complete(hf, texts, seed=0, sampling={**GREEDY, "batch_size": 1})
    assert [c.text for c in over_http] == [c.text for c in in_process]
    assert [(c.prompt_tokens, c.completion_tokens) for c in over_http] == [
        (c.prompt_tokens, c.completion_tokens) for c in in_process
    ]
    assert all(c.finish_reason in ("stop", "length") and c.completion_tokens <= 6 for c in over_http)


# ------------------------------------------------------------------ scripted fake servers
def _completion(content="<think>x</think><answer>A</answer>", top=None, usage=True):
    logprobs = None
    if top is not None:
        entries = [{"token": t, "logprob": lp, "bytes": None} for t, lp in top]
        logprobs = {"content": [{"token": "A", "logprob": -1.0, "bytes": None, "top_logprobs": entries}]}
    body = {
        "id": "x",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content},
                "logprobs": logprobs,
                "finish_reason": "stop",
            }
        ],
    }
    if usage:
        body["usage"] = {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500}
    return body


class FakeAPI:
    """A loopback server answering each POST with ``script(n, body)`` -> (status, headers, json | delay).

    Records the bodies and Authorization headers it got, and the most requests in flight at once.
    """

    def __init__(self, script):
        self.script, self.bodies, self.auth = script, [], []
        self.lock, self.active, self.peak = threading.Lock(), 0, 0
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    n = len(fake.bodies)
                    fake.bodies.append(body)
                    fake.auth.append(self.headers.get("Authorization"))
                    fake.active += 1
                    fake.peak = max(fake.peak, fake.active)
                try:
                    status, headers, payload = fake.script(n, body)
                    if isinstance(payload, float):  # a slow server: answer after the client gave up
                        time.sleep(payload)
                        payload = _completion()
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(status)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with fake.lock:
                        fake.active -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake():
    servers = []

    def start(script):
        servers.append(FakeAPI(script))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def test_request_body_is_explicit(fake, make_prompt):
    f = fake(lambda n, body: (200, {}, _completion()))
    api = OpenAIBackend("m", base_url=f.url, price_per_1k_input=0.002, price_per_1k_output=0.008)
    prompts = [make_prompt(0, prefill="<think>"), make_prompt(1)]
    gens = api.generate(prompts, model_id="m", seed=7, sampling={**GREEDY, "temperature": 0.7, "top_p": 0.9})
    first, second = sorted(f.bodies, key=lambda b: len(b["messages"]), reverse=True)
    assert {k: first[k] for k in ("model", "temperature", "top_p", "max_tokens", "seed")} == {
        "model": "m",
        "temperature": 0.7,
        "top_p": 0.9,
        "max_tokens": 6,
        "seed": 7,
    }
    assert second["seed"] == 8
    assert first["continue_final_message"] is True and first["add_generation_prompt"] is False
    assert first["messages"][-1] == {"role": "assistant", "content": "<think>"}
    image, text = first["messages"][0]["content"]
    assert (
        image["image_url"]["url"].startswith("data:image/png;base64,")
        and text["text"] == prompts[0].user_text
    )
    assert "continue_final_message" not in second and len(second["messages"]) == 1
    assert gens[0].text == "<think><think>x</think><answer>A</answer>"
    assert gens[0].cost_usd == pytest.approx(1000 * 0.002 / 1000 + 500 * 0.008 / 1000)
    assert (gens[0].prompt_tokens, gens[0].completion_tokens) == (1000, 500)


def test_fallback_delivery_instruction(fake, make_prompt):
    def echo(n, body):
        text = body["messages"][0]["content"][1]["text"]
        prefill = text.rpartition(FALLBACK_INSTRUCTION.format(prefill=""))[2]
        return 200, {}, _completion(prefill + " so A</think><answer>A</answer>")

    f = fake(echo)
    api = OpenAIBackend("m", base_url=f.url, prefill_mode="fallback")
    prompt = make_prompt(0, prefill="<think>The answer is B. But I think")
    (gen,) = api.generate([prompt], model_id="m", seed=0, sampling=GREEDY)
    (body,) = f.bodies
    assert len(body["messages"]) == 1 and "continue_final_message" not in body
    assert body["messages"][0]["content"][1]["text"] == prompt.user_text + FALLBACK_INSTRUCTION.format(
        prefill=prompt.prefill
    )
    assert gen.delivery == "fallback" and gen.completion == " so A</think><answer>A</answer>"
    assert gen.text == prompt.prefill + gen.completion and gen.answer_letter == "A"


def test_retries_429_then_500_then_success(fake, make_prompt, caplog, monkeypatch):
    from cotprobe.backends import openai_compat

    waits = []
    real_sleep = openai_compat.time.sleep
    monkeypatch.setattr(openai_compat.time, "sleep", lambda s: (waits.append(s), real_sleep(s))[1])
    script = [
        (429, {"Retry-After": "0.3"}, {"error": {"message": "slow down"}}),
        (500, {}, {"error": {"message": "boom"}}),
    ]
    f = fake(lambda n, body: script[n] if n < len(script) else (200, {}, _completion()))
    api = OpenAIBackend("m", base_url=f.url, max_retries=2, **FAST)
    with caplog.at_level(logging.WARNING):
        (gen,) = api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)
    assert len(f.bodies) == 3 and gen.answer_letter == "A"
    # Retry-After honoured over the tiny backoff (the waits asked for, not the wall clock).
    assert len(waits) == 2 and waits[0] == pytest.approx(0.3) and waits[1] <= FAST["max_backoff"]
    assert "HTTP 429" in caplog.text and "HTTP 500" in caplog.text


def test_malformed_bodies_are_retried_then_succeed(fake, make_prompt, caplog):
    script = [(200, {}, b"<html>502 Bad Gateway</html>"), (200, {}, {**_completion(), "choices": []})]
    f = fake(lambda n, body: script[n] if n < len(script) else (200, {}, _completion()))
    api = OpenAIBackend("m", base_url=f.url, max_retries=2, **FAST)
    with caplog.at_level(logging.WARNING):
        (gen,) = api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)
    assert len(f.bodies) == 3 and gen.answer_letter == "A"
    assert caplog.text.count("malformed response") == 2


@pytest.mark.parametrize("payload", [b"not json {", {"id": "x", "choices": []}, b"[]"])
def test_malformed_bodies_that_persist_fail_the_sample(fake, make_prompt, payload):
    f = fake(lambda n, body: (200, {}, payload))
    api = OpenAIBackend("m", base_url=f.url, max_retries=1, **FAST)
    with pytest.raises(APIRequestError, match=r"sample 's0'.*2 attempt\(s\): malformed response"):
        api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)
    assert len(f.bodies) == 2


def test_retries_run_out(fake, make_prompt):
    f = fake(lambda n, body: (503, {}, {"error": {"message": "overloaded"}}))
    api = OpenAIBackend("m", base_url=f.url, max_retries=2, **FAST)
    with pytest.raises(APIRequestError, match=r"sample 's0'.*3 attempt\(s\): HTTP 503: overloaded") as err:
        api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)
    assert (err.value.status, err.value.attempts, len(f.bodies)) == (503, 3, 3)


def test_permanent_401_never_shows_the_key(fake, make_prompt, monkeypatch, caplog):
    monkeypatch.setenv("COTPROBE_TEST_KEY", SECRET)
    masked = SECRET[:6] + "*" * 10 + SECRET[-4:]
    message = f"Incorrect API key provided: {SECRET} ({masked})."
    f = fake(lambda n, body: (401, {}, {"error": {"message": message, "code": "invalid_api_key"}}))
    api = OpenAIBackend("m", base_url=f.url, api_key_env="COTPROBE_TEST_KEY", max_retries=3, **FAST)
    with caplog.at_level(logging.DEBUG), pytest.raises(APIRequestError) as err:
        api.generate([make_prompt(0), make_prompt(1)], model_id="m", seed=0, sampling=GREEDY)
    assert f.auth[0] == f"Bearer {SECRET}"  # the key named in config was sent
    text = str(err.value)
    assert "HTTP 401" in text and "Incorrect API key provided" in text and err.value.attempts == 1
    assert err.value.__cause__ is None and err.value.__context__ is None
    for shown in (text, repr(err.value), caplog.text):
        assert SECRET not in shown and masked not in shown and SECRET[-8:] not in shown


def test_key_not_in_records(fake, make_prompt, monkeypatch):
    monkeypatch.setenv("COTPROBE_TEST_KEY", SECRET)
    f = fake(lambda n, body: (200, {}, _completion(top=[("A", -0.1), ("B", -2.0)])))
    api = OpenAIBackend("m", base_url=f.url, api_key_env="COTPROBE_TEST_KEY")
    prompts = [make_prompt(0)]
    gens = api.generate(prompts, model_id="m", seed=0, sampling=GREEDY)
    scores = api.letter_scores(prompts, gens)
    dumped = json.dumps([g.to_dict() for g in gens] + [vars(s) for s in scores]) + repr(api.settings)
    assert SECRET not in dumped and f.auth == [f"Bearer {SECRET}"] * 2


def test_timeout_is_retried_then_fails(fake, make_prompt):
    f = fake(lambda n, body: (200, {}, 2.0))
    api = OpenAIBackend("m", base_url=f.url, timeout=0.2, max_retries=1, **FAST)
    with pytest.raises(
        APIRequestError, match=r"sample 's0'.*2 attempt\(s\): no HTTP status \(timed out"
    ) as err:
        api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)
    # Both attempts timed out (a server that answers after 2 s would have succeeded otherwise).
    assert err.value.status is None and len(f.bodies) == 2


def test_dead_server_is_a_connection_error(fake, make_prompt):
    f = fake(lambda n, body: (200, {}, _completion()))
    f.close()  # the server is gone before the run
    api = OpenAIBackend("m", base_url=f.url, max_retries=1, **FAST)
    with pytest.raises(APIRequestError, match="connection error"):
        api.generate([make_prompt(0)], model_id="m", seed=0, sampling=GREEDY)


def test_concurrency_is_bounded(fake, make_prompt):
    def slow_reply(n, body):
        time.sleep(0.1)
        return 200, {}, _completion()

    slow = fake(slow_reply)
    api = OpenAIBackend("m", base_url=slow.url, max_concurrency=2)
    prompts = [make_prompt(i) for i in range(6)]
    gens = api.generate(prompts, model_id="m", seed=0, sampling={**GREEDY, "batch_size": 6})
    assert [g.id for g in gens] == [p.id for p in prompts] and slow.peak == 2


def test_letter_scores_from_top_logprobs(fake, make_prompt):
    top = [("x", -0.1), ("A", -1.0), (" B", -2.0), ("B ", -3.0)]
    f = fake(lambda n, body: (200, {}, _completion(top=top)))
    api = OpenAIBackend("m", base_url=f.url, top_logprobs=5)
    prompts = [make_prompt(0)]
    gens = api.generate(prompts, model_id="m", seed=0, sampling=GREEDY)
    (s,) = api.letter_scores(prompts, gens)
    body = f.bodies[-1]
    assert (body["max_tokens"], body["logprobs"], body["top_logprobs"], body["temperature"]) == (
        1,
        True,
        5,
        0.0,
    )
    assert body["messages"][-1]["content"].endswith("<answer>") and body["continue_final_message"] is True
    z = math.exp(-1.0) + math.exp(-2.0)
    assert s.probs == pytest.approx([math.exp(-1.0) / z, math.exp(-2.0) / z, 0.0, 0.0])
    assert s.missing_reason is None and s.argmax_letter == "A"


@pytest.mark.parametrize(
    ("top", "usage", "reason"),
    [(None, False, "no log-probabilities"), ([("x", -0.1), ("y", -1.0)], True, "no option letter")],
)
def test_missing_letter_scores_are_explicit(fake, make_prompt, top, usage, reason):
    f = fake(lambda n, body: (200, {}, _completion(top=top, usage=usage)))
    api = OpenAIBackend("m", base_url=f.url, top_logprobs=2)
    prompts = [make_prompt(0, prefill="<think>")]
    gens = api.generate(prompts, model_id="m", seed=0, sampling=GREEDY)
    (s,) = api.letter_scores(prompts, gens)
    assert reason in s.missing_reason and s.probs == [] and s.p_target is None
    assert math.isnan(s.entropy) and math.isnan(s.p_correct) and s.letters == list(prompts[0].options)


def test_retry_after_forms():
    assert _retry_after({"retry-after": "3"}) == 3.0
    assert _retry_after({"retry-after-ms": "250"}) == 0.25
    assert _retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert _retry_after({"retry-after": "soon"}) is None and _retry_after({}) is None


def test_import_is_light():
    code = (
        "import sys, cotprobe.backends.openai_compat, cotprobe.serving.openai_server; "
        "print(sorted(m for m in ('torch', 'transformers', 'openai') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cli_keeps_finished_batches_when_a_request_fails(fake, make_prompt, tmp_path, capsys):
    from cotprobe import cli
    from cotprobe.io import write_jsonl

    prompts = [make_prompt(i) for i in range(4)]
    by_text = {p.user_text: p.id for p in prompts}
    broken = {"s2"}

    def sample_of(body):
        return by_text.get(body["messages"][0]["content"][1]["text"])

    def script(n, body):
        if sample_of(body) in broken:
            return 400, {}, {"error": {"message": "bad request"}}
        return 200, {}, _completion(top=[("A", -0.5), ("B", -1.5)])

    f = fake(script)
    write_jsonl(tmp_path / "prompts.jsonl", (p.to_dict() for p in prompts))
    spec = {
        "backend": "openai",
        "path": "m",
        "settings": {"base_url": f.url, "max_retries": 0},
        "generation": {**GREEDY, "batch_size": 2},
    }
    out, part = tmp_path / "gen.jsonl", tmp_path / "gen.jsonl.part"
    argv = [
        "generate",
        "--model",
        "m",
        "--spec",
        json.dumps(spec),
        "--prompts",
        str(tmp_path / "prompts.jsonl"),
    ]
    argv += ["--seed", "0", "--out", str(out), "--logits-out", str(tmp_path / "logits.parquet")]
    assert cli.main(argv) == 2  # one "error:" line, no traceback
    assert re.search(r"error: sample 's2'.*HTTP 400", capsys.readouterr().err)
    kept = [json.loads(line) for line in part.read_text().splitlines()[1:]]
    assert [r["id"] for r in kept] == ["s0", "s1"] and {r["delivery"] for r in kept} == {"prefill"}
    assert not out.exists()

    broken.clear()
    sent = len(f.bodies)
    assert cli.main(argv) == 0
    resumed = [sample_of(b) for b in f.bodies[sent:] if "logprobs" not in b]
    assert sorted(resumed) == ["s2", "s3"]  # finished records were not asked again
    assert [json.loads(line)["id"] for line in out.read_text().splitlines()] == ["s0", "s1", "s2", "s3"]


def test_reasoning_models_get_no_temperature(fake, make_prompt):
    """o3 / o4-mini: max_completion_tokens and reasoning_effort; no temperature, top_p or max_tokens."""
    f = fake(lambda n, body: (200, {}, _completion()))
    api = OpenAIBackend(
        "o4-mini", base_url=f.url, prefill_mode="fallback", reasoning=True, reasoning_effort="high"
    )
    (gen,) = api.generate([make_prompt(0)], model_id="o4-mini", seed=3, sampling=GREEDY)
    api.complete_texts(["judge this"], seed=0, sampling=GREEDY)
    for body in f.bodies:
        assert not {"temperature", "top_p", "max_tokens"} & set(body)
        assert (body["max_completion_tokens"], body["reasoning_effort"]) == (6, "high")
    assert f.bodies[0]["seed"] == 3 and gen.answer_letter == "A"
    # Without an effort the API's default applies; an effort needs a reasoning model.
    OpenAIBackend("o3", base_url=f.url, reasoning=True).generate(
        [make_prompt(1)], model_id="o3", seed=0, sampling=GREEDY
    )
    assert "reasoning_effort" not in f.bodies[-1] and f.bodies[-1]["max_completion_tokens"] == 6
    for bad in ({"reasoning_effort": "high"}, {"reasoning": True, "reasoning_effort": "max"}):
        with pytest.raises(ValueError, match="reasoning_effort"):
            OpenAIBackend("o3", base_url=f.url, **bad)


def test_chat_template_kwargs_reach_the_server(fake, make_prompt):
    f = fake(lambda n, body: (200, {}, _completion()))
    api = OpenAIBackend("Qwen/Qwen3-32B", base_url=f.url, chat_template_kwargs={"enable_thinking": False})
    api.complete_texts(["judge this"], seed=0, sampling=GREEDY)
    api.generate([make_prompt(0, prefill="<think>")], model_id="q", seed=0, sampling=GREEDY)
    assert [b["chat_template_kwargs"] for b in f.bodies] == [{"enable_thinking": False}] * 2
    assert f.bodies[1]["continue_final_message"] is True  # merged with the continuation switches


@pytest.mark.parametrize("status", [400, 404, 408, 409, 422])
def test_a_4xx_other_than_429_fails_at_once_with_the_apis_message(fake, make_prompt, status):
    message = "Unsupported parameter: 'temperature' is not supported with this model."
    f = fake(lambda n, body: (status, {}, {"error": {"message": message, "type": "invalid_request_error"}}))
    api = OpenAIBackend("o3", base_url=f.url, max_retries=3, **FAST)
    with pytest.raises(
        APIRequestError, match=rf"sample 's0'.*1 attempt\(s\): HTTP {status}: {re.escape(message)}"
    ) as err:
        api.generate([make_prompt(0)], model_id="o3", seed=0, sampling=GREEDY)
    assert (err.value.status, err.value.attempts, len(f.bodies)) == (status, 1, 1)
