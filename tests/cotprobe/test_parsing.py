import pytest

from cotprobe.parsing import answer_letter, is_well_formed, parse_response


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
