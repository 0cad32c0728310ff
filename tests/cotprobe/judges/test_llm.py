"""The LLM judge: its prompt template, the strict parser on recorded replies, the real tiny-model path."""

import pytest

from cotprobe.backends import BACKENDS
from cotprobe.backends.base import BackendError, complete, make_generation
from cotprobe.judges import JUDGES
from cotprobe.judges.llm import SLOTS, LLMJudge, load_template, parse_reply, render
from cotprobe.records import UNPARSEABLE, Prompt

LETTERS = ["A", "B", "C", "D"]

# Replies recorded from judges (Qwen3-32B-style with its own think, chatty, markdown), trimmed.
CLEAN = "Verdict: think=C, agrees=YES"
EXTRA_TEXT = (
    "<think>\nThe reasoning first leans to A (yellow), then says the shape is red, option C.\n</think>\n"
    "The model considers A but concludes with C, and its answer is C.\n\n**Verdict:** think=C, agrees=YES\n"
    "Hope this helps!"
)
MARKDOWN = "Analysis done.\n`Verdict: think=(B), agrees=NO`"
LOWER = "verdict: think=b, agrees=no"
# The judge changes its mind: two verdict lines; the last one counts.
CHANGED_MIND = (
    "Verdict: think=A, agrees=NO\nWait, re-reading the end: it settles on C.\nVerdict: think=C, agrees=YES"
)
# The last line contradicts itself: think=B, but "agrees" with answer C.
SELF_CONTRADICTORY = "The reasoning ends on B.\nVerdict: think=B, agrees=YES"
NONE_YES = "It never picks one.\nVerdict: think=NONE, agrees=YES"
NONE_NO = "It never picks one.\nVerdict: think=NONE, agrees=NO"
NOT_AN_OPTION = "Verdict: think=E, agrees=NO"
BAD_AGREES = "Verdict: think=C, agrees=MAYBE"
# The judge echoes the instruction line of the template and stops: no verdict.
ECHOED_TEMPLATE = "End your reply with: Verdict: think=<the option letter, or NONE>, agrees=<YES or NO>"
GARBAGE = "\ufffdtep ninetep ninetep ninetep ninetep"
# The last verdict is unreadable even though an earlier one was fine: never fall back on it.
LAST_UNREADABLE = "Verdict: think=C, agrees=YES\nActually no.\nVerdict: think=Z, agrees=YES"


@pytest.mark.parametrize(
    "raw, letter, reason",
    [
        (CLEAN, "C", ""),
        (EXTRA_TEXT, "C", ""),
        (MARKDOWN, "B", ""),
        (LOWER, "B", ""),
        (CHANGED_MIND, "C", ""),
        (SELF_CONTRADICTORY, None, "judge: contradicts itself (think=B, agrees=YES, but the answer is C)"),
        (NONE_YES, None, "judge: contradicts itself (think=NONE, yet agrees=YES)"),
        (NONE_NO, None, "think: settles on no option (the judge says NONE)"),
        (NOT_AN_OPTION, None, "judge: think='E' is not an option (A, B, C, D) or NONE"),
        (BAD_AGREES, None, "judge: agrees='MAYBE' is neither YES nor NO"),
        (ECHOED_TEMPLATE, None, "judge: no 'Verdict: think=..., agrees=...' line in the reply"),
        (GARBAGE, None, "judge: no 'Verdict: think=..., agrees=...' line in the reply"),
        (LAST_UNREADABLE, None, "judge: think='Z' is not an option (A, B, C, D) or NONE"),
    ],
)
def test_parser_reads_the_last_verdict_strictly(raw, letter, reason):
    reading = parse_reply(raw, LETTERS, answer_letter="C")
    assert (reading.letter, reading.reason) == (letter, reason)
    assert reading.raw == raw


def test_parser_says_when_the_reply_was_cut_off():
    reading = parse_reply("The reasoning first", LETTERS, "C", truncated=True)
    assert reading.letter is None and reading.reason.endswith("(it stopped at the token limit)")


def test_agreement_is_not_checked_without_an_answer_letter():
    # No answer letter: the verdict is unparseable on the answer's side anyway; the think's letter is kept.
    assert parse_reply("Verdict: think=B, agrees=YES", LETTERS, None).letter == "B"


def test_template_has_exactly_the_named_slots_and_a_stable_hash():
    t = load_template("consistency_v1")
    assert t.sha256 == load_template("consistency_v1").sha256 and len(t.sha256) == 64
    for slot in SLOTS:
        assert "{" + slot + "}" in t.text
    with pytest.raises(ValueError, match="unknown prompt template 'v9'.*consistency_v1"):
        load_template("v9")


def prompt(i=0, answer="A"):
    return Prompt(
        id=f"s{i}", bench="shapes", variant="wrong_think", seed=0, image="unused.png",
        question="Which colour is the shape on the left?", options={"A": "red", "B": "green", "C": "blue"},
        answer=answer, category="left", user_text="(not shown to the judge)",
        prefill="<think>The answer is B. But I think",
    )  # fmt: skip


def test_render_shows_question_options_think_and_answer_but_not_the_user_turn():
    p = prompt()
    g = make_generation(p, model_id="m", completion=" it is red, so A.</think><answer>A</answer>",
                        prompt_tokens=1, completion_tokens=1, seconds=0.0, finish_reason="stop")  # fmt: skip
    text = render(load_template("consistency_v1"), p, g)
    assert "Which colour is the shape on the left?" in text
    assert "A. red\nB. green\nC. blue" in text
    assert "The answer is B. But I think it is red, so A." in text  # the pre-fill is part of the think
    assert "<<<\nA\n>>>" in text and "(not shown to the judge)" not in text


@pytest.mark.parametrize(
    "args, expected",
    [
        ({}, "'path' is required"),
        ({"path": "x", "backend": "vllmm"}, "unknown backend 'vllmm'"),
        ({"path": "x", "sampling": {"max_new_tokens": 0}}, "max_new_tokens"),
        ({"path": "x", "sampling": {"beams": 2}}, "unknown keys"),
        ({"path": "x", "prompt": "nope"}, "unknown prompt template"),
        ({"path": "x", "model": "y"}, "unknown argument 'model'"),
    ],
)
def test_bad_arguments_fail_when_built(args, expected):
    with pytest.raises(ValueError, match=expected):
        LLMJudge(**args)


def test_spec_extras_name_the_template_and_backend():
    extras = LLMJudge.spec_extras({"backend": "hf", "path": "x"})
    # The judge's cells rerun when its backend's code changes what it generates.
    assert extras == {
        "prompt_sha256": load_template("consistency_v1").sha256,
        "backend_version": BACKENDS.version("hf"),
    }


def test_a_backend_without_a_text_path_is_a_clear_error():
    from cotprobe.backends.dummy import DummyBackend

    with pytest.raises(BackendError, match="DummyBackend cannot serve text-only chat"):
        complete(DummyBackend(), ["hi"], seed=0, sampling={"max_new_tokens": 1, "temperature": 0.0,
                                                            "top_p": 1.0, "batch_size": 1})  # fmt: skip


# ------------------------------------------------------------------ the real path on the tiny model
@pytest.fixture(scope="module")
def tiny_judge(tiny_model_dir):
    return JUDGES.get("llm")(
        backend="hf", path=str(tiny_model_dir), settings={"device": "cpu"},
        sampling={"max_new_tokens": 10, "batch_size": 2},
    )  # fmt: skip


def test_tiny_model_as_judge_gives_explicit_unparseable_verdicts(tiny_judge):
    prompts = [prompt(i) for i in range(4)]
    completions = [
        " it is red, so A.</think><answer>A</answer>",
        " it is green.</think><answer>B</answer>",
        "</think><answer>C</answer>",  # an empty-of-reasoning think is still a think (the pre-fill)
        " I cannot tell",  # no closed think, no answer: nothing to ask the judge
    ]
    gens = [
        make_generation(p, model_id="tiny", completion=c, prompt_tokens=1, completion_tokens=1, seconds=0.0,
                        finish_reason="stop")
        for p, c in zip(prompts, completions)
    ]  # fmt: skip
    verdicts = tiny_judge.judge("tiny-llm", prompts, gens)
    assert [v.id for v in verdicts] == [p.id for p in prompts]
    for v in verdicts[:3]:
        # The random tiny model writes no verdict line: every reading is explicitly unparseable.
        assert v.judge_output is not None and v.judge_output.strip()
        assert v.quadrant == UNPARSEABLE and v.reason.startswith("judge: no 'Verdict: think=")
        assert v.reason.endswith("(it stopped at the token limit)")
    assert verdicts[3].judge_output is None  # not sent
    assert verdicts[3].reason == "answer: no <answer> block; think: no closed <think> block"
    # Greedy: the same question gets the same reply, in a batch of any size.
    again = tiny_judge.judge("tiny-llm", prompts[:1], gens[:1])
    assert again[0].judge_output == verdicts[0].judge_output


@pytest.mark.parametrize(
    "settings", [{}, {"chat_template_kwargs": {}}, {"chat_template_kwargs": {"enable_thinking": "no"}}]
)
def test_a_qwen3_judge_must_set_its_thinking_mode(settings):
    with pytest.raises(ValueError, match="Qwen3 model.*enable_thinking to true or false"):
        LLMJudge(path="Qwen/Qwen3-32B", settings=settings)
    judge = LLMJudge(path="Qwen/Qwen3-32B", settings={"chat_template_kwargs": {"enable_thinking": False}})
    assert judge.thinking() is False
    assert LLMJudge(path="Qwen/Qwen2.5-7B-Instruct").thinking() is None  # no switch to set


def test_verdicts_record_the_judges_thinking_mode(tiny_model_dir):
    from cotprobe.judges.rule import RuleJudge

    judge = JUDGES.get("llm")(
        backend="hf", path=str(tiny_model_dir), sampling={"max_new_tokens": 4, "batch_size": 2},
        settings={"device": "cpu", "chat_template_kwargs": {"enable_thinking": True}},
    )  # fmt: skip
    prompts = [prompt(i) for i in range(2)]
    gens = [
        make_generation(p, model_id="tiny", completion=c, prompt_tokens=1, completion_tokens=1, seconds=0.0,
                        finish_reason="stop")
        for p, c in zip(prompts, [" so A.</think><answer>A</answer>", " no answer"])
    ]  # fmt: skip
    verdicts = judge.judge("j", prompts, gens)
    assert [v.to_dict()["judge_thinking"] for v in verdicts] == [True, True]  # asked or not
    assert [v.judge_thinking for v in RuleJudge().judge("rule", prompts, gens)] == [None, None]
