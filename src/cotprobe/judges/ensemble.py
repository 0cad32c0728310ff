"""Several judges' verdicts on a cell combined into one verdict set, written like any judge's.

Every member judge votes its verdict's quadrant (``unparseable`` is a vote too). Because all
members judge the same generation, they share the answer letter and correctness; they differ
only in whether the think is consistent with the answer (or readable at all).

* ``majority``: the quadrant voted by more than half of *all* members; otherwise (a tie, or
  too many unparseable votes) the verdict is ``unparseable`` with the votes in the reason.
* ``strict`` (the paper's): the quadrant only when every member votes the same readable
  quadrant; any disagreement makes the sample ``unparseable`` (reason ``ensemble: judges
  disagree``), so the shares count only all-agree samples as classified.

Each verdict lists the members' quadrants in ``votes``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar

from cotprobe.io import InputError
from cotprobe.records import UNPARSEABLE, Verdict

RULES = ("majority", "strict")


class VerdictEnsemble:
    """Combines member judges' verdicts (config ``kind: ensemble``; not a ``Judge``: it reads no
    generation, only the members' verdicts of the same cell).

    Args:
        judges: Member judge ids (at least two), in the order their votes are listed.
        rule: ``majority`` or ``strict``.
    """

    version: ClassVar[int] = 1
    defaults: ClassVar[dict[str, Any]] = {"judges": [], "rule": "majority"}

    def __init__(self, **args: Any):
        unknown = sorted(set(args) - set(self.defaults))
        if unknown:
            raise ValueError(f"ensemble: unknown argument {unknown[0]!r} (accepted: judges, rule)")
        self.args = {**self.defaults, **args}
        members, rule = self.args["judges"], self.args["rule"]
        if not isinstance(members, list) or len(members) < 2 or len(set(members)) != len(members):
            raise ValueError(f"ensemble: 'judges' must list two or more distinct judge ids, got {members!r}")
        if rule not in RULES:
            raise ValueError(f"ensemble: 'rule' must be one of {', '.join(RULES)}, got {rule!r}")
        self.members: list[str] = list(members)
        self.rule: str = rule

    def combine(self, judge_id: str, verdicts: dict[str, list[dict[str, Any]]]) -> list[Verdict]:
        """One verdict per sample from the members' verdict rows (the first member's order).

        Args:
            judge_id: The ensemble's id, written into each verdict.
            verdicts: Member id -> its verdict rows for the cell (as read from the JSONL).

        Raises:
            InputError: A member is missing, the members' ids differ, or they disagree on the
                answer letter (they cannot have judged the same generations).
        """
        missing = [m for m in self.members if m not in verdicts]
        if missing:
            raise InputError(f"ensemble {judge_id!r}: no verdicts of member {missing[0]!r}")
        by_member = {m: {row["id"]: row for row in verdicts[m]} for m in self.members}
        order = [row["id"] for row in verdicts[self.members[0]]]
        for m, rows in by_member.items():
            if set(rows) != set(order) or len(rows) != len(verdicts[m]):
                raise InputError(
                    f"ensemble {judge_id!r}: the verdicts of {m!r} and {self.members[0]!r} differ in ids"
                )
        return [self._one(judge_id, [by_member[m][i] for m in self.members]) for i in order]

    def _one(self, judge_id: str, rows: list[dict[str, Any]]) -> Verdict:
        first = rows[0]
        for m, row in zip(self.members, rows):
            if row.get("answer_letter") != first.get("answer_letter"):
                raise InputError(
                    f"ensemble {judge_id!r}: sample {first['id']!r}: {m!r} read answer {row.get('answer_letter')!r}, "
                    f"{self.members[0]!r} read {first.get('answer_letter')!r}"
                )
        votes = {m: row["quadrant"] for m, row in zip(self.members, rows)}
        listed = ", ".join(f"{m}: {q}" for m, q in votes.items())
        winner, count = Counter(votes.values()).most_common(1)[0]
        if self.rule == "strict":
            agreed = count == len(rows) and winner != UNPARSEABLE
            why = "every judge found it unparseable" if count == len(rows) else "judges disagree"
        else:
            agreed = 2 * count > len(rows) and winner != UNPARSEABLE
            why = "most judges found it unparseable" if 2 * count > len(rows) else "no majority"
        base = {"id": first["id"], "judge": judge_id, "answer_letter": first.get("answer_letter")}
        if not agreed:
            return Verdict(
                **base,
                think_letter=None,
                correct=None,
                consistent=None,
                quadrant=UNPARSEABLE,
                reason=f"ensemble: {why} ({listed})",
                judge_version=self.version,
                votes=votes,
            )
        winners = [row for row in rows if row["quadrant"] == winner]
        letters = Counter(row.get("think_letter") for row in winners)
        return Verdict(
            **base,
            think_letter=letters.most_common(1)[0][0],  # ties go to the earlier member
            correct=winners[0]["correct"],
            consistent=winners[0]["consistent"],
            quadrant=winner,
            reason="",
            judge_version=self.version,
            votes=votes,
        )
