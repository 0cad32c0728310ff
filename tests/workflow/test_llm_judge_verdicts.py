"""The LLM judge with readable verdicts, end to end: Snakemake, the tiny model's generations, an
OpenAI-compatible judge on loopback that answers in the formats recorded from real judges.

The tiny model itself never writes a verdict line (test_end_to_end.py), so this study is the one where
the step from a parsed reply to a quadrant runs, the ensembles agree, and the agreement table's
statistics have two labels to compare: they are checked against values computed here by hand from
the verdict files.
"""

import hashlib
import json
import re
from collections import Counter
from pathlib import Path

import polars as pl
import pytest

from cotprobe.records import QUADRANTS, UNPARSEABLE

VARIANTS = ["base", "wrong_think", "correct_think"]
JUDGES = ["rule", "api-llm"]
LABELS = ("consistent", "inconsistent", "unparseable")

# Reply formats recorded from judges (tests/cotprobe/judges/test_llm.py), with the verdict slots open.
FORMATS = [
    "Verdict: think={think}, agrees={agrees}",
    (
        "<think>\nThe reasoning ends on one option.\n</think>\nIt concludes as below.\n\n"
        "**Verdict:** think={think}, agrees={agrees}\nHope this helps!"
    ),
    "Analysis done.\n`Verdict: think=({think}), agrees={agrees}`",
    "Verdict: think=NONE, agrees=NO\nWait, re-reading the end.\nVerdict: think={think}, agrees={agrees}",
]


def _between(text: str, n: int) -> str:
    """The n-th (0-based) block between <<< and >>> of the rendered judge prompt."""
    return re.findall(r"<<<\n(.*?)\n>>>", text, flags=re.DOTALL)[n]


def verdict_for(prompt: str) -> tuple[str, str]:
    """The judge's reply to one rendered question, and the letter (or NONE) it names: a deterministic
    mix of agreeing, disagreeing and NONE verdicts, in the recorded formats."""
    options = re.findall(r"^([A-Z])\. ", prompt.split("Options:\n", 1)[1].split("\n\n", 1)[0], re.MULTILINE)
    answer = _between(prompt, 1).strip()
    h = int(hashlib.sha256(prompt.encode()).hexdigest(), 16)
    others = [x for x in options if x != answer]
    kind = h % 6
    if answer in options and kind < 3:
        think, agrees = answer, "YES"
    elif kind < 5 and others:
        think, agrees = others[h // 6 % len(others)], "NO"
    else:
        think, agrees = "NONE", "NO"
    return FORMATS[h // 36 % len(FORMATS)].format(think=think, agrees=agrees), think


def jsonl(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def judged_study(finished_study, tmp_path_factory, loopback_chat):
    """A copy of the finished test study with the API judge added: its generations are the finished
    study's (not generated again), the judge cells, ensembles and agreement table are new."""
    replies: set[str] = set()  # every reply sent

    def reply(body):
        text, _ = verdict_for(body["messages"][0]["content"])
        replies.add(text)
        return text

    url, _ = loopback_chat(reply)
    study = finished_study.copy_to(tmp_path_factory.mktemp("llm-judge-study"))
    config = {k: v for k, v in study.config.items() if k != "training"}
    config["variants"] = VARIANTS
    config["judges"] = {
        "rule": {"kind": "rule"},
        "api-llm": {"kind": "llm", "args": {
            "backend": "openai", "path": "recorded-judge",
            "settings": {"base_url": url, "api_key_env": "COTPROBE_NO_SUCH_KEY", "max_retries": 0},
            "sampling": {"max_new_tokens": 64, "batch_size": 4},
        }},
    }  # fmt: skip
    name = study.write_config("judged.yaml", config)
    proc = study.run("--cores", "2", "--configfile", name, "--show-failed-logs",
                     "results/metrics/judge_agreement.csv",
                     *(f"results/verdicts/{j}/tiny/shapes/{v}/seed0.jsonl"
                       for j in ("ensemble", "ensemble-strict") for v in VARIANTS))  # fmt: skip
    # Only the judge stage ran: the copy kept the finished study's model, prompts and generations.
    ran = set(re.findall(r"^(?:local)?rule (\w+):", proc.stdout + proc.stderr, flags=re.MULTILINE))
    assert "judge_completions" in ran and not ran & {"build_tiny_model", "perturb_prompts"}, ran
    assert not any(rule.endswith("generate_completions") for rule in ran), ran
    return study, replies


def verdicts(study, judge):
    return {v: jsonl(study.file(f"results/verdicts/{judge}/tiny/shapes/{v}/seed0.jsonl")) for v in VARIANTS}


def named_letter(reply: str) -> str:
    """The letter (or NONE) that the last verdict line of one of ``FORMATS`` names."""
    return re.findall(r"think=\(?([A-Z]+)", reply)[-1]


def test_readable_replies_become_the_verdicts_quadrants(judged_study):
    study, replies = judged_study
    seen = Counter()
    for v, rows in verdicts(study, "api-llm").items():
        truth = {p["id"]: p["answer"] for p in jsonl(study.file(f"results/prompts/shapes/{v}/seed0.jsonl"))}
        for x in rows:
            if x["judge_output"] is None:  # not asked: no closed think
                assert x["quadrant"] == UNPARSEABLE
                continue
            assert x["judge_output"] in replies  # the server's reply, kept verbatim
            think = named_letter(x["judge_output"])
            if think == "NONE":
                assert x["quadrant"] == UNPARSEABLE and x["think_letter"] is None
                assert x["reason"].endswith("think: settles on no option (the judge says NONE)")
                seen["none"] += 1
                continue
            assert x["think_letter"] == think
            if x["answer_letter"] is None:
                assert x["quadrant"] == UNPARSEABLE
                continue
            consistent = think == x["answer_letter"]
            correct = x["answer_letter"] == truth[x["id"]]
            want = f"{'consistent' if consistent else 'inconsistent'}_{'correct' if correct else 'incorrect'}"
            assert want in QUADRANTS and x["quadrant"] == want and x["consistent"] is consistent, x
            assert x["correct"] is correct
            seen[want.split("_")[0]] += 1
    # Every kind of verdict came back readable at least once.
    assert seen["consistent"] and seen["inconsistent"] and seen["none"], seen


def test_the_ensembles_agree_where_their_members_do(judged_study):
    study, _ = judged_study
    rule, llm = verdicts(study, "rule"), verdicts(study, "api-llm")
    majority, strict = verdicts(study, "ensemble"), verdicts(study, "ensemble-strict")
    agreed = 0
    for v in VARIANTS:
        for a, b, m, st in zip(rule[v], llm[v], majority[v], strict[v], strict=True):
            both = a["quadrant"] == b["quadrant"] != UNPARSEABLE
            agreed += both
            assert st["quadrant"] == m["quadrant"] == (a["quadrant"] if both else UNPARSEABLE)
    assert agreed > 0  # the ensembles' agreeing path ran


def label(row) -> str | None:
    if row["answer_letter"] is None:
        return None
    if row["consistent"] is None:
        return "unparseable"
    return "consistent" if row["consistent"] else "inconsistent"


def cohen_by_hand(a: list[str], b: list[str]) -> float:
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    expected = sum(a.count(k) * b.count(k) for k in LABELS) / n**2
    return (observed - expected) / (1 - expected)


def fleiss_by_hand(table: list[list[str]]) -> float:
    n, m = len(table), len(table[0])
    per_item = [(sum(row.count(k) ** 2 for k in LABELS) - m) / (m * (m - 1)) for row in table]
    shares = [sum(row.count(k) for row in table) / (n * m) for k in LABELS]
    chance = sum(p * p for p in shares)
    return (sum(per_item) / n - chance) / (1 - chance)


def test_kappa_matches_the_verdict_files_by_hand(judged_study):
    study, _ = judged_study
    rule, llm = verdicts(study, "rule"), verdicts(study, "api-llm")
    table = []
    for v in VARIANTS:
        for a, b in zip(rule[v], llm[v], strict=True):
            assert a["id"] == b["id"]
            la, lb = label(a), label(b)
            if la is not None and lb is not None:
                table.append([la, lb])
    assert len({x for row in table for x in row}) >= 2, table  # kappa is defined: two labels in use
    col_a, col_b = [r[0] for r in table], [r[1] for r in table]
    agreement = pl.read_csv(study.file("results/metrics/judge_agreement.csv"))
    for model in ("tiny", "all"):
        rows = {r["statistic"]: r for r in agreement.filter(pl.col("model") == model).iter_rows(named=True)}
        assert rows["cohen"]["raters"] == "rule+api-llm" and rows["cohen"]["n"] == len(table)
        assert rows["cohen"]["kappa"] == pytest.approx(cohen_by_hand(col_a, col_b), abs=1e-9)
        assert rows["cohen"]["agreement"] == pytest.approx(sum(x == y for x, y in table) / len(table))
        assert rows["fleiss"]["kappa"] == pytest.approx(fleiss_by_hand(table), abs=1e-9)
