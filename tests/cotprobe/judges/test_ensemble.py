"""Ensembles: majority and strict combination of member verdicts, and their input checks."""

import pytest

from cotprobe.io import InputError
from cotprobe.judges import ENSEMBLE, JUDGES, judge_kinds, kind_class
from cotprobe.judges.ensemble import VerdictEnsemble
from cotprobe.records import UNPARSEABLE

CC, IC, CI, U = "consistent_correct", "inconsistent_correct", "consistent_incorrect", UNPARSEABLE


def row(i, quadrant, think="A", answer="A"):
    consistent = {CC: True, CI: True, IC: False}.get(quadrant)
    correct = None if quadrant == U else quadrant.endswith("_correct")
    return {"id": f"s{i}", "quadrant": quadrant, "think_letter": think, "answer_letter": answer,
            "correct": correct, "consistent": consistent}  # fmt: skip


# Per sample, the votes of judges a, b, c.
VOTES = [
    (CC, CC, CC),  # all agree
    (CC, CC, IC),  # two of three
    (CC, IC, U),  # no majority
    (U, U, CC),  # a majority that cannot be read
    (CI, CI, CI),  # all agree, incorrect
    (U, U, U),  # nobody can read it
]


def members(votes=VOTES):
    out = {"a": [], "b": [], "c": []}
    for i, vs in enumerate(votes):
        for judge, q in zip(out, vs):
            out[judge].append(row(i, q, think="B" if q == IC else "A"))
    return out


def test_majority():
    verdicts = VerdictEnsemble(judges=["a", "b", "c"], rule="majority").combine("ens", members())
    assert [v.quadrant for v in verdicts] == [CC, CC, U, U, CI, U]
    assert verdicts[1].votes == {"a": CC, "b": CC, "c": IC} and verdicts[1].think_letter == "A"
    assert verdicts[1].consistent is True and verdicts[1].correct is True
    assert verdicts[2].reason == f"ensemble: no majority (a: {CC}, b: {IC}, c: {U})"
    assert verdicts[3].reason.startswith("ensemble: most judges found it unparseable")
    assert all(v.judge == "ens" and v.answer_letter == "A" for v in verdicts)


def test_strict_keeps_only_samples_where_all_agree():
    verdicts = VerdictEnsemble(judges=["a", "b", "c"], rule="strict").combine("ens-strict", members())
    assert [v.quadrant for v in verdicts] == [CC, U, U, U, CI, U]
    assert verdicts[1].reason.startswith("ensemble: judges disagree (a: ")
    assert verdicts[5].reason.startswith("ensemble: every judge found it unparseable")


def test_two_judges_tie_is_no_majority():
    verdicts = VerdictEnsemble(judges=["a", "b"]).combine(
        "e", {"a": [row(0, CC)], "b": [row(0, IC, think="B")]}
    )
    assert verdicts[0].quadrant == U and verdicts[0].reason.startswith("ensemble: no majority")


def test_members_must_have_judged_the_same_generations():
    e = VerdictEnsemble(judges=["a", "b"])
    with pytest.raises(InputError, match="the verdicts of 'b' and 'a' differ in ids"):
        e.combine("e", {"a": [row(0, CC)], "b": [row(1, CC)]})
    with pytest.raises(InputError, match="'b' read answer 'B'"):
        e.combine("e", {"a": [row(0, CC)], "b": [row(0, CC, answer="B")]})
    with pytest.raises(InputError, match="no verdicts of member 'b'"):
        e.combine("e", {"a": [row(0, CC)]})


@pytest.mark.parametrize(
    "args, expected",
    [
        ({"judges": ["a"]}, "two or more distinct"),
        ({"judges": ["a", "a"]}, "two or more distinct"),
        ({"judges": ["a", "b"], "rule": "mode"}, "'rule' must be one of majority, strict"),
        ({"judges": ["a", "b"], "weights": [1, 2]}, "unknown argument 'weights'"),
    ],
)
def test_bad_arguments(args, expected):
    with pytest.raises(ValueError, match=expected):
        kind_class("ensemble")(**args)


def test_an_ensemble_is_a_judge_kind_but_not_a_registered_judge():
    assert ENSEMBLE in judge_kinds() and ENSEMBLE not in JUDGES
    assert kind_class(ENSEMBLE) is VerdictEnsemble and kind_class(ENSEMBLE).version == 1
    assert set(judge_kinds()) == {*JUDGES.names(), ENSEMBLE}
