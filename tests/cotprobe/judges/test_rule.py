import pytest

from cotprobe.io import InputError
from cotprobe.judges import JUDGES, Judge
from cotprobe.judges.rule import RuleJudge
from cotprobe.records import UNPARSEABLE, Generation, Prompt

OPTIONS = {"A": "yellow", "B": "purple", "C": "red"}


def settle(think, options=OPTIONS, **args):
    return RuleJudge(**args).settle(think, options)


def prompt(id_="s1", answer="C"):
    return Prompt(
        id=id_, bench="shapes", variant="wrong_think", seed=0, image="x.png", question="Colour?",
        options=dict(OPTIONS), answer=answer, category="left", user_text="...",
    )  # fmt: skip


def generation(id_="s1", think="so C.", answer="C", status="ok"):
    return Generation(
        id=id_, model="tiny", bench="shapes", variant="wrong_think", seed=0, prefill="", completion="",
        text="", think=think, answer_text=answer, answer_letter=answer, parse_status=status,
        prompt_tokens=1, completion_tokens=1, seconds=0.1, finish_reason="stop",
    )  # fmt: skip


@pytest.mark.parametrize(
    "think, letter",
    [
        ("A. yellow\nB. purple\nC. red\nso option C.", "C"),
        ("The shape is red, so option B.\nA. yellow\nB. purple\nC. red", "B"),
        ("Options:\n(A) yellow\n(B) purple\n(C) red\nThe answer is (A).", "A"),
        (
            "The shape on the left is purple. So the answer is B. Wait, it looks red. But I think the answer is C",
            "C",
        ),
        ("The answer is B.\nHmm, on second thought, C is correct.", "C"),
        ("Rather than (B), the answer is (A). Option C is wrong.", "A"),
        ("It is not B. I'll go with A.", "A"),
        ("I think C.", "C"),
        ("Checking again...\nC\n", "C"),
        ("Answer: B", "B"),
        ("So, it is B", "B"),
        ("option c", "C"),
        ("The colour is red.\nC. red", "C"),
    ],
)
def test_settles_on_the_last_explicit_letter(think, letter):
    assert settle(think).letter == letter


def test_letters_outside_the_options_are_ignored():
    assert settle("So D is right, or maybe E. Therefore C.").letter == "C"
    assert settle("So the answer is D.").letter is None


def test_articles_are_not_letters():
    assert settle("So A shape on the left looks red.").letter == "C"


@pytest.mark.parametrize(
    "think, letter",
    [
        ("The shape on the left looks red.", "C"),
        ("The shape looks red, not purple.", "C"),
        ("It could be yellow... no, it is Purple", "B"),
        ("A. yellow\nB. purple\nC. red\nThe shape is purple.", "B"),
    ],
)
def test_text_only_mentions(think, letter):
    assert settle(think).letter == letter


def test_text_fallback_can_be_switched_off():
    reading = settle("The shape looks red.", use_option_text=False)
    assert reading.letter is None and "no option" in reading.reason


def test_longer_option_text_owns_the_mention():
    assert settle("it is dark red", {"A": "red", "B": "dark red"}).letter == "B"
    assert settle("dark red? no, red", {"A": "red", "B": "dark red"}).letter == "A"
    assert settle("I count 3... no wait, 4", {"A": "3", "B": "4", "C": "5"}).letter == "B"


@pytest.mark.parametrize(
    "think, reason",
    [
        (None, "no closed <think> block"),
        ("  ", "empty"),
        ("The shape is round.", "settles on no option"),
        ("A. yellow\nB. purple\nC. red", "settles on no option"),
    ],
)
def test_no_option_gives_a_reason(think, reason):
    reading = settle(think)
    assert reading.letter is None and reason in reading.reason


def test_ambiguous_texts_settle_on_nothing():
    reading = settle("hmm", {"A": "hmm", "B": "hmm"})
    assert reading.letter is None and "ambiguous" in reading.reason


def test_judge_builds_quadrants():
    prompts = [prompt("a"), prompt("b"), prompt("c"), prompt("d"), prompt("e")]
    generations = [
        generation("a", think="so C.", answer="C"),
        generation("b", think="so B.", answer="C"),
        generation("c", think="so B.", answer="B"),
        generation("d", think="so C.", answer="B"),
        generation("e", think="round", answer="C"),
    ]
    verdicts = RuleJudge().judge("rule", prompts, list(reversed(generations)))
    assert [v.id for v in verdicts] == ["a", "b", "c", "d", "e"]
    assert [v.quadrant for v in verdicts] == [
        "consistent_correct",
        "inconsistent_correct",
        "consistent_incorrect",
        "inconsistent_incorrect",
        UNPARSEABLE,
    ]
    assert verdicts[1].think_letter == "B" and verdicts[1].correct and not verdicts[1].consistent
    assert verdicts[4].correct is None and "think" in verdicts[4].reason
    assert all(v.judge == "rule" and v.judge_version == RuleJudge.version for v in verdicts)


def test_missing_answer_is_unparseable_with_reason():
    (verdict,) = RuleJudge().judge("rule", [prompt()], [generation(answer=None, status="no_answer")])
    assert verdict.quadrant == UNPARSEABLE and verdict.reason.startswith("answer:")
    assert verdict.think_letter == "C" and verdict.consistent is None


def test_no_think_is_unparseable_on_the_think_side():
    (verdict,) = RuleJudge().judge("rule", [prompt()], [generation(think=None, status="no_think")])
    assert verdict.quadrant == UNPARSEABLE and verdict.reason == "think: no closed <think> block"


def test_unpaired_ids_fail():
    with pytest.raises(InputError, match="'b'"):
        RuleJudge().judge("rule", [prompt("a"), prompt("b")], [generation("a")])
    with pytest.raises(InputError, match="'z'"):
        RuleJudge().judge("rule", [prompt("a")], [generation("a"), generation("z")])
    with pytest.raises(InputError, match="duplicate"):
        RuleJudge().judge("rule", [prompt("a")], [generation("a"), generation("a")])


def test_args_are_validated():
    with pytest.raises(ValueError, match="use_option_txt"):
        RuleJudge(use_option_txt=False)
    with pytest.raises(ValueError, match="use_option_text"):
        RuleJudge(use_option_text="no")


def test_registered_lazily():
    assert JUDGES.get("rule") is RuleJudge
    assert issubclass(RuleJudge, Judge) and JUDGES.version("rule") == 1
