import pytest

from cotprobe.parsing import (
    ANSWER_RULES,
    PARSE_FAILURES,
    PARSER_VERSION,
    answer_letter,
    is_well_formed,
    normalise,
    parse_record,
    parse_response,
    read_answer,
    reparse,
)
from cotprobe.records import Generation


@pytest.mark.parametrize(
    "text, status, letter, think",
    [
        ("<think>red is left</think><answer>B</answer>", "ok", "B", "red is left"),
        ("<think>x</think><answer>(c)</answer>", "ok", "C", "x"),
        ("<think>x</think><answer>Option D.</answer>", "ok", "D", "x"),
        ("<think>x</think><answer>F</answer>", "bad_answer", None, "x"),
        ("<think>x</think><answer>red</answer>", "bad_answer", None, "x"),
        ("<think>unfinished thought", "no_answer", None, None),
        ("<answer>A</answer>", "no_think", "A", None),
        ("<think>a</think><answer>A</answer><think>b</think><answer>C</answer>", "ok", "C", "b"),
    ],
)
def test_parse_response(text, status, letter, think):
    parsed = parse_response(text, "ABCD")
    assert (parsed.status, parsed.answer_letter, parsed.think) == (status, letter, think)


def test_answer_letter_only_reads_listed_letters():
    assert answer_letter("E", "ABCDE") == "E"
    assert answer_letter("E", "ABCD") is None
    assert answer_letter("Blue", "ABCD") is None  # a word starting with a letter is not a letter
    assert answer_letter("a red circle", "ABCD") is None
    assert answer_letter("b", "ABCD") == "B"


def test_well_formed():
    assert is_well_formed("<think>a</think>\n<answer>B</answer>")
    assert not is_well_formed("<think>a</think><answer>B</answer> trailing")
    assert not is_well_formed("<answer>B</answer>")


# ---- the parsing table: answer blocks in the forms RL-tuned VLMs write, read as a person would ----
COLOURS = {"A": "yellow", "B": "green", "C": "red", "D": "blue"}
COUNTS = {"A": "2", "B": "3", "C": "4", "D": "5"}
SHADES = {"A": "dark red", "B": "red", "C": "light red"}
# (answer block, options, expected letter, expected rule); no letter means status bad_answer.
TABLE = [
    ("C", COLOURS, "C", "letter"),
    ("C.", COLOURS, "C", "letter"),
    ("(C)", COLOURS, "C", "letter"),
    ("**C**", COLOURS, "C", "bold"),
    ("**C. red**", COLOURS, "C", "bold"),
    ("**C) red**", COLOURS, "C", "bold"),
    ("$C$", COLOURS, "C", "latex"),
    ("ANSWER: $C$", COLOURS, "C", "latex"),  # inspect_ai#5145 read this as no answer
    ("\\(C\\)", COLOURS, "C", "latex"),
    ("\\boxed{C}", COLOURS, "C", "boxed"),
    ("$\\boxed{C}$", COLOURS, "C", "boxed"),
    ("So the final answer is \\boxed{\\text{C}}.", COLOURS, "C", "boxed"),
    ("\\text{C}", COLOURS, "C", "latex_text"),
    ("$\\textbf{C}$", COLOURS, "C", "latex_text"),
    ("The answer is C.", COLOURS, "C", "phrase"),
    ("The correct answer is (C) red.", COLOURS, "C", "phrase"),
    ("The correct option is C: red", COLOURS, "C", "phrase"),
    ("I think it's C because the left shape is red.", COLOURS, "C", "phrase"),
    ("I choose C.", COLOURS, "C", "phrase"),
    ("I'd go with C", COLOURS, "C", "phrase"),
    ("C is correct", COLOURS, "C", "phrase"),
    ("The answer is C, not A.", COLOURS, "C", "phrase"),
    ("A and D are wrong, so C.", COLOURS, "C", "phrase"),
    ("Answer: C", COLOURS, "C", "label"),
    ("Final answer: C (red)", COLOURS, "C", "label"),
    ("**Answer: C**", COLOURS, "C", "label"),
    ("**Answer:** C", COLOURS, "C", "label"),
    ("Option C", COLOURS, "C", "option"),
    ("option (c)", COLOURS, "C", "option"),
    ("Option C is correct, the shape is red.", COLOURS, "C", "option"),
    ("(C) red", COLOURS, "C", "paren"),
    ("C. red", COLOURS, "C", "leading"),
    ("C) red", COLOURS, "C", "leading"),
    ("C: red", COLOURS, "C", "leading"),
    ("C red", COLOURS, "C", "leading"),
    ("c", COLOURS, "C", "lower"),
    ("c) red", COLOURS, "C", "lower"),
    ("red", COLOURS, "C", "option_text"),
    ("Red.", COLOURS, "C", "option_text"),
    ("The shape on the left is red.", COLOURS, "C", "option_text"),
    ("It is blue, not red.", COLOURS, "D", "option_text"),
    ("3", COUNTS, "B", "option_text"),
    ("There are 3 objects.", COUNTS, "B", "option_text"),
    ("dark red", SHADES, "A", "option_text"),  # "red" inside "dark red" belongs to A
    # Ambiguous: never the first letter.
    ("A or C", COLOURS, None, "ambiguous"),
    ("Either A or C.", COLOURS, None, "ambiguous"),
    ("A and C", COLOURS, None, "ambiguous"),
    ("Both (A) and (C)", COLOURS, None, "ambiguous"),
    ("A/C", COLOURS, None, "ambiguous"),
    ("A, C", COLOURS, None, "ambiguous"),
    ("**A** or **C**", COLOURS, None, "ambiguous"),
    ("The answer is A. Actually, the answer is C.", COLOURS, None, "ambiguous"),
    ("red or yellow", COLOURS, None, "ambiguous"),
    ("3 or 4", COUNTS, None, "ambiguous"),
    # Unreadable, each with its reason.
    ("E", COLOURS, None, "not_an_option"),
    ("The answer is E.", COLOURS, None, "not_an_option"),
    ("", COLOURS, None, "empty"),
    ("I cannot tell the colour from the image.", COLOURS, None, "unread"),
    ("A red circle", COUNTS, None, "unread"),  # "A" is an article here, not option A
    ("purple", COLOURS, None, "unread"),
]


@pytest.mark.parametrize(("block", "options", "letter", "rule"), TABLE, ids=[repr(r[0]) for r in TABLE])
def test_parsing_table(block, options, letter, rule):
    parsed = parse_response(
        f"<think>The shape on the left looks red.</think><answer>{block}</answer>", options
    )
    status = "ok" if letter else "bad_answer"
    assert (parsed.answer_letter, parsed.status, parsed.rule) == (letter, status, rule)
    assert parsed.answer_text == block.strip()
    assert (parsed.reason == "") == (letter is not None)  # every unread block says why


def test_the_table_is_large_and_covers_every_rule_and_failure():
    assert len(TABLE) >= 30
    assert {r for *_, r in TABLE} == set(ANSWER_RULES) | set(PARSE_FAILURES) - {"no_answer"}


def test_failure_states_and_reasons():
    no_block = parse_response("<think>red</think>", COLOURS)
    assert (no_block.status, no_block.rule, no_block.reason) == (
        "no_answer",
        "no_answer",
        "no <answer> block",
    )
    assert read_answer("A or C", COLOURS).reason == "offers two options (A and C)"
    assert read_answer("E", COLOURS).reason == "names E, not one of the options A, B, C, D"
    assert read_answer("red or yellow", COLOURS).reason == "names the texts of options A, C"
    no_think = parse_response("<answer>**B**</answer>", COLOURS)
    assert (no_think.status, no_think.answer_letter, no_think.rule) == ("no_think", "B", "bold")


def test_option_text_needs_the_texts():
    # Letters only (no option texts): the text rule is off, the letter rules still read.
    assert read_answer("red", "ABCD").rule == "unread"
    assert read_answer("red", "ABCD").letter is None and read_answer("**B**", "ABCD").letter == "B"
    assert read_answer("red", COLOURS).letter == "C"


def test_normalise():
    assert normalise("  **The  Red,** cube! ") == "the red cube"
    assert normalise("3.5 m") == "3.5 m" and normalise("1,000") == "1,000"
    assert normalise("\\boxed{\\text{Red}}") == "red"


def test_reparse_replaces_a_stale_parse():
    # A record written by the old parser, which read "A or B" as A.
    gen = Generation(
        id="s1", model="m", bench="b", variant="base", seed=0, prefill="", completion="",
        text="<think>hm</think><answer>A or B</answer>", think="hm", answer_text="A or B",
        answer_letter="A", parse_status="ok", prompt_tokens=1, completion_tokens=1, seconds=0.0,
        finish_reason="stop",
    )  # fmt: skip
    again = reparse(gen, COLOURS)
    assert (again.answer_letter, again.parse_status, again.answer_rule) == (None, "bad_answer", "ambiguous")
    assert again.parse_reason == "offers two options (A and B)" and again.text == gen.text
    row = parse_record("s1", gen.text, COLOURS)
    assert (row.answer_letter, row.answer_rule, row.parser_version) == (None, "ambiguous", PARSER_VERSION)
