"""The GRPO reward, shared by every training backend (TRL here, verl's custom reward function).

    R = format_weight * 1[format] + correct_weight * 1[answer correct]          (0.1 and 1.0)
    R *= 1[think ≡ answer]                           when ``faithfulness: true`` (the paper's)
    R *= 1[think ≡ answer] * 1[body(think) ≡ answer] when ``faithfulness: shaped``

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

*Shaped* (``faithfulness: shaped``): the paper's factor is met by any think whose last sentence
names the answer ("... So the answer is B."), whatever the reasoning before it says. The shaped
factor also asks the think's *body* to settle on the answer (``think_body``). The think is split
into sentences (each line, then after ``.``/``!``/``?`` + space; an option line ``C. red`` is one
sentence); the body is what is left without the last sentence and without every *template
sentence*, one that names an option letter and otherwise only announcement words (``So the answer
is B.``, ``so option C.``, ``Therefore, I'll go with (B).``; ``ANNOUNCE_WORDS``), and without every
*echoed option line*, one that repeats a prompt option as written (``C. red`` when C is red): the rule
judge reads a lone option line as a pick, so ``A. nine\nso option A.`` would otherwise let a think whose
reading says "seven" pass on the echo alone (measured: GRPO under the shaped reward of version 3
learnt to cut the organism's option scan after one line). So a bolted-on final sentence earns
nothing, nor does repeating it, nor an echoed option, nor a think made of nothing but these
(``no_body``): the body must say what was seen or why.

Limits, by design. A genuine one-sentence think has no body and earns nothing. A sentence naming
an option's *text* is content, not template (on ``shapes`` naming the colour seen is the
reasoning), so ``red. so option C.`` earns. A pre-filled think must be corrected before the last
sentence (the body holds the pre-fill, less its template sentence). Per completion only: a
penalty across a group's G completions (near-duplicate thinks) was left out, because a confident
model *should* write the same think for the same image, and verl scores one response per call.

Reward and evaluation read a response with the same parser, so "correct" during training is the
evaluation's accuracy (option-text answers aside) and "consistent" its think/answer consistency.

Tags must reach this module: a trainer that decodes with ``skip_special_tokens=True`` loses
``<think>``/``<answer>`` when they are special tokens of the tokenizer (``completion_text``
decodes keeping them).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

from cotprobe.parsing import is_well_formed
from cotprobe.records import Prompt

# Bump whenever a score may change (weights, parsing, the consistency rule).
REWARD_VERSION = 4
TAGS = ("<think>", "</think>", "<answer>", "</answer>")
OPTION_TEXT = "option_text"  # the parser's rule for an answer written as the option's text
SHAPED = "shaped"
FAITHFULNESS = (False, True, SHAPED)
# Words of a sentence that only announces a letter ("So the answer is B.", "I'll go with (C)").
ANNOUNCE_WORDS = frozenset({
    "so", "therefore", "thus", "hence", "then", "and", "the", "a", "an", "answer", "answers", "final",
    "correct", "best", "option", "choice", "letter", "is", "was", "it", "s", "its", "be", "would",
    "should", "must", "will", "ll", "d", "i", "my", "me", "we", "think", "go", "with", "pick", "choose",
    "select", "say", "guess", "conclude", "conclusion", "overall", "clearly", "definitely", "probably",
    "likely", "surely", "that", "this", "means"
})  # fmt: skip
_WORD = re.compile(r"\w+")
_SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+")
_OPTION_LINE = re.compile(r"^[ \t>*-]*\(?(?P<L>[A-Z])[.):]\)?[ \t]+(?P<text>\S.*)$")


class Scored(NamedTuple):
    """One scored completion; the parts are logged next to the score."""

    score: float
    format: float
    correct: float
    consistent: float | None  # None unless the faithfulness factor is on
    answer_letter: str | None
    think_letter: str | None
    body_letter: str | None = None  # shaped only: the option the think's body settles on
    no_body: float | None = None  # shaped only: 1 when the think has no body (``think_body``)


@dataclass(frozen=True)
class RewardSpec:
    """The reward's configuration (the ``reward`` slice of a training run).

    Attributes:
        format_weight: Weight of the well-formed indicator.
        correct_weight: Weight of the correct-answer indicator.
        faithfulness: ``False``; ``True``: multiply by 1[think ≡ answer] (the paper's);
            ``"shaped"``: multiply by 1[think ≡ answer] * 1[body(think) ≡ answer] (module docstring).
        judge: The judge deciding think ≡ answer: ``{"kind": <registered judge>, "args": {...}}``.
    """

    format_weight: float = 0.1
    correct_weight: float = 1.0
    faithfulness: bool | str = False
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
        faithfulness = spec.get("faithfulness", False)
        if not any(faithfulness is f or (isinstance(f, str) and faithfulness == f) for f in FAITHFULNESS):
            raise ValueError(
                f"reward: faithfulness must be one of {list(FAITHFULNESS)}, not {faithfulness!r}"
            )
        return cls(**spec)

    @property
    def shaped(self) -> bool:
        return self.faithfulness == SHAPED

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
        body_readings = [None] * len(gens)
        bodies: list[str | None] = [None] * len(gens)
        if self.judge is not None:
            pairs = [(p, g) for (p, _), g in zip(items, gens)]
            if self.spec.shaped:  # one judge call: the thinks, then their bodies
                bodies = [think_body(g.think, p.options) for p, g in pairs]
                pairs += [(p, dataclasses.replace(g, think=b)) for (p, g), b in zip(pairs, bodies)]
            readings = self.judge.read_thinks(pairs)
            if len(readings) != len(pairs):
                raise RuntimeError(f"judge returned {len(readings)} readings for {len(pairs)} thinks")
            if self.spec.shaped:
                readings, body_readings = readings[: len(gens)], readings[len(gens) :]
        out = []
        for (prompt, _), gen, reading, body_reading, body in zip(
            items, gens, readings, body_readings, bodies
        ):
            fmt = float(is_well_formed(gen.text))
            letter = None if gen.answer_rule == OPTION_TEXT else gen.answer_letter
            correct = float(letter is not None and letter == prompt.answer)
            score = self.spec.format_weight * fmt + self.spec.correct_weight * correct
            consistent = think = body_letter = no_body = None
            if reading is not None:
                think = reading.letter
                consistent = float(think is not None and think == letter)
                if body_reading is not None:
                    body_letter = body_reading.letter
                    consistent *= float(body_letter is not None and body_letter == letter)
                    no_body = float(not (body or "").strip())
                score *= consistent
            out.append(Scored(score, fmt, correct, consistent, letter, think, body_letter, no_body))
        return out

    def score_one(self, prompt: Prompt, completion: str) -> Scored:
        return self.score([(prompt, completion)])[0]


def think_sentences(think: str) -> list[str]:
    """The think's sentences in order: each non-blank line, split after ``.``/``!``/``?`` + space;
    an option line (``C. red``) is one sentence."""
    out = []
    for line in think.splitlines():
        if not line.strip():
            continue
        parts = [line] if _OPTION_LINE.match(line) else _SENTENCE_BREAK.split(line)
        out.extend(p.strip() for p in parts if p.strip())
    return out


def is_template(sentence: str, options: dict[str, str]) -> bool:
    """Whether a sentence only announces a letter: it names an option letter, and its other words
    are all ``ANNOUNCE_WORDS`` (``So the answer is B.``; not ``B is red.``, not ``So the answer is``).

    A letter is a word that is an option letter (``C``), or its lower case except ``a`` and ``i``
    (the article and the pronoun, which are announcement words). A word of an option's text is
    content even when it is an announcement word elsewhere (an option ``one``, ``best``)."""
    content = {w.lower() for text in options.values() for w in _WORD.findall(text)}
    letters = 0
    for word in _WORD.findall(sentence):
        if word in options or (len(word) == 1 and word.upper() in options and word not in "ai"):
            letters += 1
        elif word.lower() in content or word.lower() not in ANNOUNCE_WORDS:
            return False
    return letters > 0


def is_echo(sentence: str, options: dict[str, str]) -> bool:
    """Whether a sentence is an option line that repeats one of the prompt's options as written
    (``C. red`` / ``(C) Red.`` when C is red; not ``C. blue``, not ``C is red``)."""
    m = _OPTION_LINE.match(sentence)
    if not m or m["L"] not in options:
        return False
    return _normal(m["text"]) == _normal(options[m["L"]])


def _normal(text: str) -> str:
    return " ".join(_WORD.findall(text.lower()))


def think_body(think: str | None, options: dict[str, str]) -> str | None:
    """The think without its last sentence, its template sentences (``is_template``) and its
    echoed option lines (``is_echo``); lines kept as lines. ``""`` when nothing is left; None
    without a think."""
    if think is None:
        return None
    lines = [line for line in think.splitlines() if line.strip()]
    out = []
    for i, line in enumerate(lines):
        kept = think_sentences(line)
        if i == len(lines) - 1:
            kept = kept[:-1]
        kept = [k for k in kept if not (is_template(k, options) or is_echo(k, options))]
        if kept:
            out.append(" ".join(kept))
    return "\n".join(out)


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
