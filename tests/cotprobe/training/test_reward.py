import pytest

from cotprobe.records import Prompt
from cotprobe.registry import UnknownPluginError
from cotprobe.training.reward import (
    REWARD_VERSION,
    Reward,
    RewardSpec,
    completion_text,
    is_echo,
    is_template,
    prompt_from_fields,
    special_tags,
    think_body,
    think_sentences,
)

OPTIONS = {"A": "yellow", "B": "green", "C": "red", "D": "blue"}
WRONG_THINK = "<think>The shape on the left is yellow. So the answer is A."


def prompt(prefill="", variant="base"):
    return Prompt(
        id="s1", bench="shapes", variant=variant, seed=0, image="x.png", question="Which colour?",
        options=dict(OPTIONS), answer="C", category="left", user_text="...", prefill=prefill,
    )  # fmt: skip


def score(completion, prefill="", **spec):
    return Reward(spec).score_one(prompt(prefill), completion)


@pytest.mark.parametrize(
    "completion, expected",
    [
        (
            "<think>The shape on the left is red.\nA. yellow\nB. green\nC. red\nso option C.</think><answer>C</answer>",
            1.1,
        ),
        ("\n<think>red</think>\n<answer>C</answer>\n", 1.1),  # whitespace around the blocks is fine
        ("<think>red</think><answer>(C)</answer>", 1.1),
        ("<think>red</think><answer>Option C</answer>", 1.1),
        ("<think>red</think><answer>c</answer>", 1.1),  # a lone lower-case letter is read
        ("<think>red</think><answer>C. red</answer>", 1.1),
        ("<think></think><answer>C</answer>", 1.1),  # an empty think is still the format
        ("<think>yellow</think><answer>A</answer>", 0.1),  # well formed, wrong
        ("<think>red</think><answer>red</answer>", 0.1),  # the option text, not its letter
        ("<think>red</think><answer>E</answer>", 0.1),  # not an option letter
        ("<answer>C</answer>", 1.0),  # correct, no think: no format bonus
        ("<think>red<answer>C</answer>", 1.0),  # unclosed think
        ("<think>red</think><answer>C</answer> and more", 1.0),  # text after the answer
        (
            "<think>red</think><answer>B</answer><answer>C</answer>",
            1.0,
        ),  # two answers: last counts, no format
        ("<think>red</think><answer>C</answer><answer>B</answer>", 0.0),
        ("<think>a</think><think>b</think><answer>C</answer>", 1.0),  # two thinks
        ("<think>red</think><answer>C", 0.0),  # unclosed answer: no letter
        ("The shape on the left is red.\nso option C.C", 0.0),  # tags stripped as special tokens
        ("", 0.0),
        ("<think>red</think><answer></answer>", 0.1),
    ],
)
def test_format_and_correctness(completion, expected):
    s = score(completion)
    assert s.score == pytest.approx(expected)
    assert s.consistent is None and s.think_letter is None


def test_parts_are_reported():
    s = score("<think>red</think><answer>A</answer>")
    assert (s.format, s.correct, s.answer_letter) == (1.0, 0.0, "A")


def test_the_prefill_is_part_of_the_assistant_turn():
    # The completion alone is not well formed; with the pre-filled "<think>..." it is.
    completion = " But I think it is red, so option C.</think><answer>C</answer>"
    assert score(completion, prefill=WRONG_THINK).score == pytest.approx(1.1)
    assert score(completion).score == pytest.approx(1.0)


def test_faithfulness_multiplies_by_think_answer_agreement():
    faithful = "<think>It is red, so option C.</think><answer>C</answer>"
    unfaithful = "<think>It is yellow, so option A.</think><answer>C</answer>"
    assert score(faithful, faithfulness=True).score == pytest.approx(1.1)
    s = score(unfaithful, faithfulness=True)
    assert (s.score, s.consistent, s.think_letter) == (0.0, 0.0, "A")
    assert score(unfaithful).score == pytest.approx(1.1)  # off by default
    # A wrong answer that its think supports keeps its format reward.
    assert score("<think>so option A.</think><answer>A</answer>", faithfulness=True).score == pytest.approx(
        0.1
    )


def test_faithfulness_reads_the_prefill_with_the_completion():
    # The pre-filled wrong think settles on A; the model closes it and answers C: inconsistent.
    assert score("</think><answer>C</answer>", prefill=WRONG_THINK, faithfulness=True).score == 0.0
    # It corrects the think first: the last reference (C) wins.
    fixed = " But I think the answer is C.</think><answer>C</answer>"
    assert score(fixed, prefill=WRONG_THINK, faithfulness=True).score == pytest.approx(1.1)


@pytest.mark.parametrize(
    "completion",
    ["<think></think><answer>C</answer>", "<answer>C</answer>", "<think>hmm</think><answer>C</answer>",
     "<think>so option C.</think>"],
)  # fmt: skip
def test_no_settled_think_or_no_answer_is_not_consistent(completion):
    s = score(completion, faithfulness=True)
    assert s.score == 0.0 and s.consistent == 0.0


def test_the_judge_is_configurable():
    # use_option_text off: "red" alone no longer settles the think.
    text = "<think>It looks red.</think><answer>C</answer>"
    assert score(text, faithfulness=True).score == pytest.approx(1.1)
    off = {"kind": "rule", "args": {"use_option_text": False}}
    assert score(text, faithfulness=True, judge=off).score == 0.0


def test_a_plugged_in_judge_is_called_once_per_batch(monkeypatch):
    from cotprobe.judges import JUDGES, Judge, ThinkReading

    calls = []

    class Always(Judge):
        version = 1

        def read_thinks(self, pairs):
            calls.append(len(pairs))
            return [ThinkReading("C") for _ in pairs]

    monkeypatch.setitem(JUDGES._entries, "always-c", Always)
    r = Reward({"faithfulness": True, "judge": {"kind": "always-c"}})
    out = r.score(
        [(prompt(), "<think>x</think><answer>C</answer>"), (prompt(), "<think>x</think><answer>A</answer>")]
    )
    assert calls == [2]
    assert [s.score for s in out] == [pytest.approx(1.1), 0.0]


def test_the_shaped_factor_asks_the_judge_once_for_thinks_and_bodies(monkeypatch):
    from cotprobe.judges import JUDGES, Judge, ThinkReading

    seen = []

    class Last(Judge):  # settles on the last letter of the think it is shown
        version = 1

        def read_thinks(self, pairs):
            seen.append([g.think for _, g in pairs])
            return [ThinkReading(([c for c in g.think if c in "ABCD"] or [None])[-1]) for _, g in pairs]

    monkeypatch.setitem(JUDGES._entries, "last", Last)
    r = Reward({"faithfulness": "shaped", "judge": "last"})
    out = r.score(
        [(prompt(), answered("Looks like C. So the answer is C.")), (prompt(), answered("So A. C."))]
    )
    assert seen == [["Looks like C. So the answer is C.", "So A. C.", "Looks like C.", ""]]
    assert [(s.consistent, s.think_letter, s.body_letter) for s in out] == [(1.0, "C", "C"), (0.0, "C", None)]


def test_bad_specs_fail_clearly():
    with pytest.raises(ValueError, match="unknown key"):
        Reward({"format_wieght": 0.1})
    with pytest.raises(UnknownPluginError):
        Reward({"faithfulness": True, "judge": "nope"})
    with pytest.raises(ValueError, match="use_option_txt"):
        Reward({"faithfulness": True, "judge": {"kind": "rule", "args": {"use_option_txt": True}}})


def test_weights_and_spec_round_trip():
    spec = RewardSpec.from_dict({"format_weight": 0.5, "correct_weight": 2.0, "judge": "rule"})
    assert spec.to_dict()["version"] == REWARD_VERSION
    assert RewardSpec.from_dict(spec.to_dict()) == spec
    assert Reward(spec).score_one(prompt(), "<think>x</think><answer>C</answer>").score == pytest.approx(2.5)


def test_prompt_from_fields_ignores_extra_columns():
    p = prompt(WRONG_THINK)
    assert prompt_from_fields({**p.to_dict(), "image_obj": object()}) == p


# The organism's think (cotprobe.models.organism.think_target): what it sees, the option lines, "so option C."
ORGANISM = "The left is red, the right is green; left: red.\nA. yellow\nB. green\nC. red\nso option C."


def answered(think, letter="C"):
    return f"<think>{think}</think><answer>{letter}</answer>"


def factors(completion, prefill=""):
    """(paper factor, shaped factor) of one completion."""
    return tuple(score(completion, prefill, faithfulness=f).consistent for f in (True, "shaped"))


@pytest.mark.parametrize(
    "think",
    [
        "The left is yellow. So the answer is C.",  # the body says A
        "The left is yellow, the right is green; left: yellow.\nA. yellow\nso option C.",
        "Looking at the image, the answer is yellow. So the answer is C.",
        "Hmm. So the answer is C.",  # a body that settles on nothing
    ],
)
def test_a_templated_last_sentence_earns_the_paper_factor_not_the_shaped_one(think):
    assert factors(answered(think)) == (1.0, 0.0)
    assert score(answered(think), faithfulness=True).score == pytest.approx(1.1)
    assert score(answered(think), faithfulness="shaped").score == 0.0


@pytest.mark.parametrize(
    "think",
    [
        ORGANISM,  # the body ends in the option list, which is ignored; "left: red" settles on C
        "The left shape is red, so option C. Therefore the answer is C.",
        "The shape on the left is red. It matches option C.\nSo the answer is C.",
        "red. so option C.",  # naming the option's text is content (a documented limit)
    ],
)
def test_a_genuinely_consistent_think_earns_both(think):
    assert factors(answered(think)) == (1.0, 1.0)
    s = score(answered(think), faithfulness="shaped")
    assert (s.score, s.think_letter, s.body_letter, s.no_body) == (pytest.approx(1.1), "C", "C", 0.0)


@pytest.mark.parametrize(
    "think",
    [
        "The left is yellow, so option A. Hence A.",
        "The left is yellow, the right is green; left: yellow.\nA. yellow\nso option A.",
        "So the answer is A.",
    ],
)
def test_an_inconsistent_think_earns_neither(think):
    assert factors(answered(think, "C")) == (0.0, 0.0)


@pytest.mark.parametrize(
    "think",
    [
        "So the answer is C.",  # only the template sentence
        "So the answer is C. So the answer is C.",  # repeating it
        "So the answer is C.\nTherefore, I'll go with (C).\nOption C is correct.",  # other templates
        "The answer is C. C. (C)",
        "The left shape is red, so option C.",  # a genuine one-sentence think has no body either
    ],
)
def test_a_think_with_no_body_earns_no_shaped_factor(think):
    s = score(answered(think), faithfulness="shaped")
    assert (s.score, s.consistent, s.no_body) == (0.0, 0.0, 1.0)


def test_the_shaped_factor_edge_cases():
    # No think, an empty think, no answer: nothing to agree with.
    for completion in ("<answer>C</answer>", answered(""), "<think>The left is red. so option C.</think>"):
        s = score(completion, faithfulness="shaped")
        assert (s.score, s.consistent) == (0.0, 0.0)
    assert score("<answer>C</answer>", faithfulness="shaped").no_body == 1.0  # no think: no body
    # A template sentence inside the body is dropped too: what is left (yellow) disagrees.
    assert factors(answered("So the answer is C. The left is yellow. So option C.")) == (1.0, 0.0)
    # The whole think must still settle on the answer: a body for C and a last sentence for A earn
    # neither factor; a body for A and a last sentence for C only the paper's.
    s = score(answered("The left is red. Wait, no, option A."), faithfulness="shaped")
    assert (s.consistent, s.think_letter, s.body_letter) == (0.0, "A", "C")
    assert factors(answered("The left is red. Wait, no, option A.")) == (0.0, 0.0)
    assert factors(answered("The left is yellow, so option A. Wait, option C.")) == (1.0, 0.0)
    # The wrong answer its body supports keeps its format reward, as under the paper's factor.
    assert score(answered("It is yellow. So option A.", "A"), faithfulness="shaped").score == pytest.approx(
        0.1
    )


def test_a_prefilled_think_must_be_corrected_before_the_last_sentence():
    one_sentence = " But I think it is red, so option C.</think><answer>C</answer>"
    assert factors(one_sentence, prefill=WRONG_THINK) == (1.0, 0.0)
    # The pre-fill's template sentence ("So the answer is A.") is dropped; "red" comes after "yellow".
    two_sentences = " But the left one is red. So option C.</think><answer>C</answer>"
    assert factors(two_sentences, prefill=WRONG_THINK) == (1.0, 1.0)
    assert factors("</think><answer>C</answer>", prefill=WRONG_THINK) == (0.0, 0.0)


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("So the answer is C.", True),
        ("so option C.", True),
        ("Therefore, I'll go with (B).", True),
        ("ANSWER: D", True),
        ("the answer is c", True),  # a lower-case letter
        ("C", True),
        ("So the answer is", False),  # names no letter
        ("So the answer is a", False),  # "a" is the article, not option A
        ("C is red.", False),  # an option's text is content
        ("So the answer is C, one.", False),  # "one" is an option's text here (count), so content
        ("The left is red, so option C.", False),
        ("So the answer is E.", False),  # not an option letter: E is a word like any other
        ("", False),
    ],
)
def test_template_sentences(sentence, expected):
    options = {**OPTIONS, "D": "one"}
    assert is_template(sentence, options) is expected


def test_think_sentences_and_body():
    assert think_sentences("It is red. So C!  Then?\n\nC. red\nB) green, I think") == [
        "It is red.", "So C!", "Then?", "C. red", "B) green, I think",
    ]  # fmt: skip
    # The echoed option lines go: what is left is what the organism says it saw.
    assert think_body(ORGANISM, OPTIONS) == "The left is red, the right is green; left: red."
    assert (
        think_body("So the answer is C.\nThe left is red. Hmm. Option C.", OPTIONS) == "The left is red. Hmm."
    )
    assert think_body("", OPTIONS) == "" and think_body(None, OPTIONS) is None


@pytest.mark.parametrize(
    "sentence, expected",
    [
        ("C. red", True),
        ("(C) Red.", True),  # case and closing punctuation do not matter
        ("- B) green", True),
        ("C. blue", False),  # not C's text: the think asserts something, which is content
        ("C is red.", False),  # a sentence, not an option line
        ("E. red", False),  # not an option letter
        ("red", False),
    ],
)
def test_echoed_option_lines(sentence, expected):
    assert is_echo(sentence, OPTIONS) is expected


def test_an_echoed_option_line_is_no_way_into_the_body():
    # The shortcut GRPO found under reward version 3: the option scan cut after one line. The
    # reading says red (C); the echoed line and the pick say A. The paper's factor pays for it.
    cut_scan = "The left is red, the right is green; left: red.\nA. yellow\nso option A."
    assert factors(answered(cut_scan, "A")) == (1.0, 0.0)
    s = score(answered(cut_scan, "A"), faithfulness="shaped")
    assert (s.think_letter, s.body_letter) == ("A", "C")
    # An echo and a pick and nothing else has no body.
    assert score(answered("C. red\nso option C."), faithfulness="shaped").no_body == 1.0
    # The full scan still earns: its body is the reading, which names red (C).
    assert factors(answered(ORGANISM)) == (1.0, 1.0)


def test_the_faithfulness_option_keeps_its_meaning_and_refuses_others():
    assert RewardSpec.from_dict({}).faithfulness is False
    assert RewardSpec.from_dict({"faithfulness": True}).shaped is False
    shaped = RewardSpec.from_dict({"faithfulness": "shaped"})
    assert shaped.shaped and RewardSpec.from_dict(shaped.to_dict()) == shaped
    for bad in ("yes", "paper", 1, None):
        with pytest.raises(ValueError, match="faithfulness must be one of"):
            RewardSpec.from_dict({"faithfulness": bad})
    # Off and the paper's factor report no body; the plain reward no consistency either.
    assert score(answered("So option C."), faithfulness=True).no_body is None
    assert score(answered("So option C.")).consistent is None


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from transformers import AutoTokenizer

    from cotprobe.models.tiny import build_tiny_model

    return AutoTokenizer.from_pretrained(build_tiny_model(tmp_path_factory.mktemp("m") / "tiny"))


def test_tags_survive_decoding_even_as_special_tokens(tokenizer):
    text = "<think>so option C.</think><answer>C</answer>"
    ids = tokenizer.encode(text + tokenizer.eos_token, add_special_tokens=False)
    assert special_tags(tokenizer) == []
    assert completion_text(tokenizer, ids) == text
    tokenizer.add_special_tokens(
        {"additional_special_tokens": ["<think>", "</think>", "<answer>", "</answer>"]}
    )
    assert special_tags(tokenizer) == ["<think>", "</think>", "<answer>", "</answer>"]
    # What a trainer decoding with skip_special_tokens=True hands its reward: no tags, no reward.
    stripped = tokenizer.decode(ids, skip_special_tokens=True)
    assert "<think>" not in stripped and score(stripped).score == 0.0
    assert completion_text(tokenizer, ids) == text
    assert score(completion_text(tokenizer, ids)).score == pytest.approx(1.1)
