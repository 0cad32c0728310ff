"""The optional LLM answer extractor against a loopback OpenAI-compatible server (the backend tests' FakeAPI):
which rows are sent, how replies are read and recorded, API errors, and the parse CLI end to end."""

import importlib.util
import json
import re
from pathlib import Path

import pytest

from cotprobe import cli
from cotprobe.backends.base import BackendError, make_generation
from cotprobe.extractor import EXTRACTOR_VERSION, Extractor, parse_reply
from cotprobe.io import write_jsonl
from cotprobe.parsing import PARSER_VERSION, RULE_LLM, parse_record

_spec = importlib.util.spec_from_file_location(
    "openai_fakes", Path(__file__).parent / "backends" / "test_openai_compat.py"
)
_fakes = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fakes)
FakeAPI, _completion = _fakes.FakeAPI, _fakes._completion

# Sample index -> its whole assistant turn, and the reply the fake extractor gives when asked about it.
TEXTS = {
    0: ("<think>t</think><answer>B</answer>", None),  # read by the rules: never sent
    1: ("<think>t</think><answer>the colour of the big square</answer>", "C"),  # unread -> C
    2: ("<think>t</think><answer>I cannot tell from here</answer>", "NONE"),  # unread -> none
    3: ("<think>t</think><answer>something odd</answer>", "Probably B, maybe D"),  # not a letter
    4: ("<think>t</think><answer>A or B</answer>", None),  # ambiguous: never sent
    5: ("<think>t</think> no answer block", None),  # no_answer: never sent
    6: ("<answer>E</answer>", " **D.** "),  # not_an_option, no think -> D, status no_think
    7: ("<think>t</think><answer></answer>", None),  # empty: never sent
}
SENT = [1, 2, 3, 6]


def _answer_in(body) -> str:
    text = body["messages"][0]["content"]
    return re.search(r"<<<\n(.*?)\n>>>", text, re.DOTALL).group(1)


@pytest.fixture
def api():
    answers = {TEXTS[i][0].split("<answer>")[-1].split("</answer>")[0]: reply for i, reply in
               ((i, r) for i, (_, r) in TEXTS.items())}  # fmt: skip
    server = FakeAPI(lambda n, body: (200, {}, _completion(answers[_answer_in(body)])))
    yield server
    server.close()


def _args(url, **extra):
    return {"backend": "openai", "path": "fake-extractor",
            "settings": {"base_url": url, "api_key_env": "COTPROBE_NO_SUCH_KEY", "max_retries": 0},
            "sampling": {"batch_size": 3}, **extra}  # fmt: skip


@pytest.fixture
def cell(make_prompt):
    prompts = [make_prompt(i) for i in TEXTS]
    gens = [make_generation(p, model_id="m", completion=TEXTS[i][0], prompt_tokens=1, completion_tokens=1,
                            seconds=0.0, finish_reason="stop") for i, p in zip(TEXTS, prompts)]  # fmt: skip
    return prompts, gens


@pytest.mark.parametrize(
    "raw, letter, reason",
    [
        ("B", "B", ""),
        (" **B.** ", "B", ""),
        ("(C)\n", "C", ""),
        ("<think>A or B? The text says blue.</think>\nB", "B", ""),
        ("NONE", None, "NONE"),
        ("None.", None, "NONE"),
        ("E", None, "is not one option letter (A, B, C, D) or NONE"),
        ("b", None, "is not one option letter"),
        ("The answer is B", None, "is not one option letter"),
        ("B or C", None, "is not one option letter"),
        ("", None, "is not one option letter"),
    ],
)
def test_parse_reply_takes_one_option_letter_or_none(raw, letter, reason):
    got, why = parse_reply(raw, ["A", "B", "C", "D"])
    assert got == letter and reason in why and (why == "") == (letter is not None)


def test_a_truncated_reply_says_so():
    assert parse_reply("Let me think about", ["A", "B"], truncated=True)[1].endswith(
        "(it stopped at the token limit)"
    )


def test_only_what_the_rules_could_not_read_is_sent_and_every_reply_is_recorded(api, cell):
    prompts, gens = cell
    rows = [parse_record(p.id, g.text, p.options) for p, g in zip(prompts, gens)]
    out = Extractor(**_args(api.url)).extract(list(zip(prompts, rows)))
    asked = sorted(_answer_in(b) for b in api.bodies)
    assert asked == sorted(rows[i].answer_text for i in SENT)  # one request per sent row, nothing else
    name = "LLM extractor fake-extractor (extract_v1)"
    for i, (before, after) in enumerate(zip(rows, out)):
        if i not in SENT:
            assert after == before and after.extractor_output is None
            continue
        assert after.extractor_output == TEXTS[i][1]  # the raw reply, verbatim
        assert after.parser_version == PARSER_VERSION and after.answer_text == before.answer_text
    # Read: letter, rule llm, a reason naming the extractor and what the rules found.
    assert (out[1].answer_letter, out[1].answer_rule, out[1].parse_status) == ("C", RULE_LLM, "ok")
    assert out[1].parse_reason.startswith(f"read by the {name}; the rules found unread: ")
    assert (out[6].answer_letter, out[6].answer_rule, out[6].parse_status) == ("D", RULE_LLM, "no_think")
    assert "not_an_option" in out[6].parse_reason
    # Not read: unchanged but for the reason.
    for i, why in ((2, "says it chooses none of the options (NONE)"),
                   (3, "reply 'Probably B, maybe D' is not one option letter (A, B, C, D) or NONE")):  # fmt: skip
        assert (out[i].answer_letter, out[i].answer_rule, out[i].parse_status) == (
            None,
            "unread",
            "bad_answer",
        )
        assert out[i].parse_reason == f"{rows[i].parse_reason}; {name}: {why}"


def test_the_question_shows_the_sample_s_question_and_options(api, cell):
    prompts, gens = cell
    rows = [parse_record(p.id, g.text, p.options) for p, g in zip(prompts, gens)]
    Extractor(**_args(api.url)).extract([(prompts[1], rows[1])])
    (body,) = api.bodies
    text = body["messages"][0]["content"]
    assert prompts[1].question in text and _answer_in(body) == "the colour of the big square"
    assert "\n".join(f"{k}. {v}" for k, v in prompts[1].options.items()) in text
    assert body["model"] == "fake-extractor" and body["max_tokens"] == 16 and body["temperature"] == 0.0


def test_nothing_to_send_makes_no_request(api, cell):
    prompts, gens = cell
    rows = [parse_record(p.id, g.text, p.options) for p, g in zip(prompts, gens)]
    kept = [(p, r) for i, (p, r) in enumerate(zip(prompts, rows)) if i not in SENT]
    assert Extractor(**_args(api.url)).extract(kept) == [r for _, r in kept] and api.bodies == []


def test_an_api_error_fails_with_a_message_naming_the_extractor_and_sample(cell):
    prompts, gens = cell
    rows = [parse_record(p.id, g.text, p.options) for p, g in zip(prompts, gens)]
    server = FakeAPI(lambda n, body: (400, {}, {"error": {"message": "model not found"}}))
    try:
        with pytest.raises(BackendError, match=r"^LLM extractor fake-extractor \(extract_v1\) failed on sample 's1': "
                                                r"chat completion at http://127\.0\.0\.1:\d+/v1 failed after 1 "
                                                r"attempt\(s\): HTTP 400: model not found$"):  # fmt: skip
            Extractor(**_args(server.url, sampling={"batch_size": 1})).extract(list(zip(prompts, rows)))
    finally:
        server.close()


@pytest.mark.parametrize(
    "args, message",
    [
        ({"path": ""}, "argument 'path' is required"),
        ({"prompt": "consistency_v1"}, "has slots"),  # a judge's template, not an extractor's
        ({"prompt": "nope"}, "unknown prompt template 'nope'"),
        ({"settings": {"base_url": "http://127.0.0.1:1/v1", "bse_url": 1}}, "unknown setting 'bse_url'"),
        ({"sampling": {"max_new_tokens": 0}}, "max_new_tokens and batch_size must be >= 1"),
        ({"temperature": 0.0}, "unknown argument"),
    ],
)
def test_bad_args_fail_when_built(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Extractor(**{**_args("http://127.0.0.1:1/v1"), **args})


def test_the_spec_holds_version_template_hash_and_backend_version():
    spec = Extractor.spec({"path": "m", "settings": {"base_url": "http://127.0.0.1:1/v1"}})
    assert (
        spec["version"] == EXTRACTOR_VERSION
        and spec["backend"] == "openai"
        and spec["prompt"] == "extract_v1"
    )
    assert len(spec["prompt_sha256"]) == 64 and spec["backend_version"] >= 1
    assert Extractor.from_spec(spec).args == {**Extractor.defaults, "path": "m",
                                              "settings": {"base_url": "http://127.0.0.1:1/v1"}}  # fmt: skip


def _files(tmp_path, prompts, gens):
    write_jsonl(tmp_path / "prompts.jsonl", (p.to_dict() for p in prompts))
    write_jsonl(tmp_path / "gen.jsonl", (g.to_dict() for g in gens))
    return ["parse", "--prompts", str(tmp_path / "prompts.jsonl"), "--generations", str(tmp_path / "gen.jsonl"),
            "--out", str(tmp_path / "parsed.jsonl")]  # fmt: skip


def _rows(path):
    return [json.loads(x) for x in Path(path).read_text().splitlines()]


def test_the_parse_cli_with_and_without_the_extractor(api, cell, tmp_path):
    argv = _files(tmp_path, *cell)
    assert cli.main(argv) == 0
    plain = _rows(tmp_path / "parsed.jsonl")
    assert api.bodies == [] and {r["extractor_output"] for r in plain} == {None}
    spec = Extractor.spec(_args(api.url))
    assert cli.main([*argv, "--extractor", json.dumps(spec)]) == 0
    read = _rows(tmp_path / "parsed.jsonl")
    assert len(api.bodies) == len(SENT)
    assert [r["answer_letter"] for r in read] == ["B", "C", None, None, None, None, "D", None]
    assert [r["answer_rule"] for r in read] == [
        "letter", "llm", "unread", "unread", "ambiguous", "no_answer", "llm", "empty"
    ]  # fmt: skip
    for i, (a, b) in enumerate(zip(plain, read)):
        if i not in SENT:
            assert a == b


def test_the_parse_cli_fails_the_cell_on_an_api_error(cell, tmp_path, capsys):
    argv = _files(tmp_path, *cell)
    server = FakeAPI(lambda n, body: (401, {}, {"error": {"message": "bad key"}}))
    try:
        spec = Extractor.spec(_args(server.url))
        assert cli.main([*argv, "--extractor", json.dumps(spec)]) == 2
    finally:
        server.close()
    err = capsys.readouterr().err
    assert "error: LLM extractor fake-extractor (extract_v1) failed on sample" in err and "bad key" in err
    assert not (tmp_path / "parsed.jsonl").exists()


@pytest.mark.parametrize(
    "value, message",
    [("{", "--extractor: not valid JSON"), ("[1]", "--extractor: expected a JSON object"),
     ('{"path": "m", "colour": 1}', "--extractor: extractor: unknown argument(s) ['colour']")],
)  # fmt: skip
def test_the_parse_cli_rejects_a_bad_extractor_spec(cell, tmp_path, capsys, value, message):
    assert cli.main([*_files(tmp_path, *cell), "--extractor", value]) == 2
    assert message in capsys.readouterr().err
