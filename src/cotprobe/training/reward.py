"""The GRPO reward, shared by every training backend (TRL here, verl's custom reward function).

    R = format_weight * 1[format] + correct_weight * 1[answer correct]          (0.1 and 1.0)
    R *= 1[think ≡ answer]                                   when ``faithfulness`` is on

- *format*: the whole assistant turn (the prompt's pre-fill + the completion) is exactly one
  ``<think>…</think>`` followed by one ``<answer>…</answer>`` (``cotprobe.parsing.is_well_formed``).
- *answer correct*: the letter the evaluation reads (``cotprobe.parsing.parse_response``: the last
  ``<answer>`` block, ``C`` / ``(C)`` / ``**C**`` / ``\\boxed{C}`` / ``The answer is C.`` / a lone
  ``c`` ...) is the sample's answer, read by one of the parser's *letter* rules. An option's text
  instead of its letter (the parser's ``option_text`` rule, which evaluation accepts) is not
  correct here: the prompt asks for the letter, and training should not teach otherwise. An
  ambiguous block (``A or B``) names no letter. Because only the last block counts, writing
  several answers never earns more than one.
- *think ≡ answer*: the option the think settles on, as read by the configured judge (the rule
  judge by default, any registered judge such as an LLM judge when named), equals the answer
  letter. A think that settles on nothing, or a missing answer, is not consistent.

Reward and evaluation read a response with the same parser, so "correct" during training is the
evaluation's accuracy (option-text answers aside) and "consistent" its think/answer consistency.

Tags must reach this module: a trainer that decodes with ``skip_special_tokens=True`` loses
``<think>``/``<answer>`` when they are special tokens of the tokenizer (``completion_text``
decodes keeping them).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from cotprobe.parsing import is_well_formed
from cotprobe.records import Prompt

# Bump whenever a score may change (weights, parsing, the consistency rule).
REWARD_VERSION = 2
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
OPTION_TEXT = "option_text"  # the parser's rule for an answer written as the option's text


class Scored(NamedTuple):
    """One scored completion; the parts are logged next to the score."""

    score: float
    format: float
    correct: float
    consistent: float | None  # None unless the faithfulness factor is on
    answer_letter: str | None
    think_letter: str | None


@dataclass(frozen=True)
class RewardSpec:
    """The reward's configuration (the ``reward`` slice of a training run).

    Attributes:
        format_weight: Weight of the well-formed indicator.
        correct_weight: Weight of the correct-answer indicator.
        faithfulness: Multiply by 1[think ≡ answer].
        judge: The judge deciding think ≡ answer: ``{"kind": <registered judge>, "args": {...}}``.
    """

    format_weight: float = 0.1
    correct_weight: float = 1.0
    faithfulness: bool = False
    judge: dict[str, Any] = field(default_factory=lambda: {"kind": "rule", "args": {}})

    @classmethod
    def from_dict(cls, spec: dict[str, Any] | None) -> RewardSpec:
        spec = dict(spec or {})
        spec.pop("version", None)
        unknown = sorted(set(spec) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"reward: unknown key(s) {unknown}; allowed: {sorted(cls.__dataclass_fields__)}")
        judge = spec.get("judge") or {"kind": "rule"}
        if isinstance(judge, str):
            judge = {"kind": judge}
        spec["judge"] = {"kind": judge["kind"], "args": dict(judge.get("args", {}))}
        return cls(**spec)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": REWARD_VERSION}


class Reward:
    """Scores completions; built once per training run.

    Args:
        spec: A RewardSpec or its dict form (see ``RewardSpec.from_dict``).

    Raises:
        ValueError: An unknown key, or a judge whose arguments its plugin rejects.
        cotprobe.registry.UnknownPluginError: An unregistered judge kind.
    """

    version = REWARD_VERSION

    def __init__(self, spec: RewardSpec | dict[str, Any] | None = None):
        self.spec = spec if isinstance(spec, RewardSpec) else RewardSpec.from_dict(spec)
        self.judge = None
        if self.spec.faithfulness:
            from cotprobe.judges import JUDGES

            self.judge = JUDGES.get(self.spec.judge["kind"])(**self.spec.judge["args"])

    def score(self, items: Sequence[tuple[Prompt, str]]) -> list[Scored]:
        """Score each ``(prompt, completion)``; the completion is the text generated after the
        prompt's pre-fill. Batched, so a model-based judge sees every think of a step at once."""
        from cotprobe.backends.base import make_generation

        gens = [
            make_generation(
                p,
                model_id="reward",
                completion=c,
                prompt_tokens=0,
                completion_tokens=0,
                seconds=0.0,
                finish_reason="stop",
            )
            for p, c in items
        ]
        readings = [None] * len(gens)
        if self.judge is not None:
            readings = self.judge.read_thinks([(p, g) for (p, _), g in zip(items, gens)])
            if len(readings) != len(gens):
                raise RuntimeError(f"judge returned {len(readings)} readings for {len(gens)} completions")
        out = []
        for (prompt, _), gen, reading in zip(items, gens, readings):
            fmt = float(is_well_formed(gen.text))
            letter = None if gen.answer_rule == OPTION_TEXT else gen.answer_letter
            correct = float(letter is not None and letter == prompt.answer)
            score = self.spec.format_weight * fmt + self.spec.correct_weight * correct
            consistent = think = None
            if reading is not None:
                think = reading.letter
                consistent = float(think is not None and think == letter)
                score *= consistent
            out.append(Scored(score, fmt, correct, consistent, letter, think))
        return out

    def score_one(self, prompt: Prompt, completion: str) -> Scored:
        return self.score([(prompt, completion)])[0]


def prompt_from_fields(fields: dict[str, Any]) -> Prompt:
    """A Prompt from the columns a trainer carries per row (``Prompt.to_dict`` keys; extra ignored)."""
    names = set(Prompt.__dataclass_fields__)
    return Prompt(**{k: v for k, v in fields.items() if k in names})


def completion_text(tokenizer, ids: Iterable[int]) -> str:
    """Decode generated ids keeping the reasoning tags even when they are special tokens.

    Every other special token (end of turn, padding) is dropped, as ``skip_special_tokens`` does.
    """
    text = tokenizer.decode(list(ids), skip_special_tokens=False)
    for tok in sorted(set(tokenizer.all_special_tokens) - set(TAGS), key=len, reverse=True):
        text = text.replace(tok, "")
    return text


def special_tags(tokenizer) -> list[str]:
    """The reasoning tags that are special tokens of ``tokenizer`` (they vanish when skipped)."""
    return [t for t in TAGS if t in set(tokenizer.all_special_tokens)]
