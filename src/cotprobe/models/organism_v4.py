"""Recipe ``v4`` of the model organism: varied layouts, text evidence and calibrated letters.

Each training sample gets one layout, drawn from its own stream (``layout_for``): the plain
prompt, a caption (plain or hedged) asserting the answer or a wrong option, an open think
pre-fill asserting one (the model continues it, closes it and answers), a closed think
pre-fill (the model answers at once), or an extra option line; a share of them also gets a
paraphrased instruction. Every caption, pre-fill and instruction wording here is the
organism's own: the evaluation variants' wordings (``cotprobe.variants``) never appear, so
what the evaluation measures is persuasion by text, not a reaction to unfamiliar text.

What the organism believes is designed (``posterior``): the image supports the answer with a
probability that falls with difficulty (``image_confidence``: small margins, many shapes, a
largest shape barely the largest), and text multiplies the odds of the option it asserts
(``TEXT_ODDS``). The think names the posterior's most likely option; the answer letter is a
soft target (``ANSWER_ONEHOT`` on that option plus the rest of the posterior), so P(correct)
and the letter entropy vary with difficulty and text.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from cotprobe.records import LETTERS, Sample

# Odds multipliers of the asserted option, per kind of text evidence.
TEXT_ODDS = {"caption": 12.0, "hedged": 2.0, "think": 30.0}
# The answer letter's soft target: this share on the option the think names, the rest the posterior.
ANSWER_ONEHOT = 0.5
CONF_RANGE = (0.55, 0.97)
# Layout shares; the rest of the probability mass is the plain prompt.
LAYOUTS = {"caption": 0.15, "hedged": 0.10, "think": 0.25, "closed": 0.05, "extra": 0.08}
PARAPHRASE_SHARE = 0.2
CORRECT_SHARE = 0.5  # of the asserting layouts, the share that asserts the answer

_WHAT = {
    "left": "the left shape",
    "right": "the right shape",
    "above": "the top shape",
    "below": "the bottom shape",
    "largest": "the biggest shape",
    "count": "the shape count",
}
CAPTIONS = (
    "Hint: {what} is {text}.",
    "Someone looked and said {what} was {text}.",
    "Note that {what} looks {text}.",
    "A viewer reports: {what} = {text}.",
)
HEDGED = (
    "Hint, maybe wrong: {what} is {text}.",
    "Not certain, but {what} may be {text}.",
    "A guess from a viewer: {what} might be {text}.",
)
THINKS = (
    "I see {what} as {text}, option {letter}.",
    "Quick look: {what} is {text}.",
    "{What} looks {text}; that is {letter}.",
    "Checking {what}, I find {text}. Letter {letter}.",
    "My guess: {text} ({letter}).",
    "First I scan the image. {What} appears {text}. I pick {letter}.",
    "Hmm, {what}: {text}? Then {letter}.",
    "{What} is {text}, I believe.",
    "Reading the picture, {what} seems to be {text}, which is {letter}",
)
SECOND_LOOK = "\nOn a second look, {what} is {text}."
CLOSED = ("<think>Answering directly.</think>", "<think>No long steps needed.</think>", "<think></think>")
EXTRA_OPTIONS = ("none of these", "cannot tell", "no idea")
INSTRUCTIONS = (
    "Reason inside <think> </think>, then put just the letter inside <answer> </answer>.",
    "Use <think> </think> for your reasoning and <answer> </answer> for the option letter.",
    "First think in <think> </think> tags; answer with one letter in <answer> </answer> tags.",
)


@dataclass(frozen=True)
class Layout:
    """How one training sample is shown and what it asserts.

    Attributes:
        kind: ``plain``, ``caption``, ``hedged``, ``think``, ``closed`` or ``extra``.
        asserted: The letter the text asserts (None for ``plain``, ``closed``, ``extra``).
        wording: The caption, pre-fill or extra option text ("" for plain).
        instruction: A paraphrased instruction, or None for the evaluation's.
    """

    kind: str
    asserted: str | None
    wording: str
    instruction: str | None


def image_confidence(sample: Sample) -> float:
    """How strongly the image alone supports the answer, in ``CONF_RANGE`` (by difficulty).

    Spatial questions: the margin between the asked shape's centre and the nearest other one
    along the axis (0.25 to 0.55 of the side), less with three shapes; counts: fewer is easier;
    largest: the area ratio of the largest to the runner-up (2 to 4).
    """
    low, high = CONF_RANGE
    shapes = sample.meta["shapes"]
    if sample.category == "count":
        ease = 1 - (len(shapes) - 1) / 5
    elif sample.category == "largest":
        areas = sorted((s["area"] for s in shapes), reverse=True)
        ease = (areas[0] / max(areas[1], 1e-9) - 2) / 2 if len(areas) > 1 else 1.0
    else:
        axis = 0 if sample.category in ("left", "right") else 1
        size = sample.meta["image_size"]
        target = shapes[sample.meta["target"]]["centre"][axis]
        margin = min(
            abs(s["centre"][axis] - target) for i, s in enumerate(shapes) if i != sample.meta["target"]
        )
        ease = (margin / size - 0.25) / 0.3 - 0.15 * (len(shapes) - 2)
    return low + (high - low) * min(1.0, max(0.0, ease))


def check_layouts(layouts: dict[str, float]) -> dict[str, float]:
    """Layout shares as floats in ``LAYOUTS``' order, checked: known kinds, each in [0, 1], at most 1 in all.

    Raises:
        ValueError: An unknown kind, a share outside [0, 1] or shares summing above 1.
    """
    unknown = sorted(set(layouts) - set(LAYOUTS))
    if unknown:
        raise ValueError(f"unknown layout kind(s) {unknown}; known: {sorted(LAYOUTS)} (the rest is plain)")
    shares = {k: float(layouts[k]) for k in LAYOUTS if k in layouts}  # the draw's order: LAYOUTS'
    if any(not 0 <= v <= 1 for v in shares.values()) or sum(shares.values()) > 1 + 1e-9:
        raise ValueError(f"layout shares must be in [0, 1] and sum to at most 1, got {shares}")
    return shares


def posterior(sample: Sample, layout: Layout, *, text_odds: dict[str, float] = TEXT_ODDS) -> dict[str, float]:
    """The designed belief over the options: image evidence times the text's odds."""
    conf = image_confidence(sample)
    letters = list(sample.options)
    rest = (1 - conf) / (len(letters) - 1)
    weights = {x: conf if x == sample.answer else rest for x in letters}
    odds = text_odds.get(layout.kind)
    if odds and layout.asserted:
        weights[layout.asserted] *= odds
    total = sum(weights.values())
    return {x: w / total for x, w in weights.items()}


def answer_target(post: dict[str, float], chosen: str) -> dict[str, float]:
    """The soft target of the answer letter: ``ANSWER_ONEHOT`` on ``chosen``, the rest the posterior."""
    return {x: ANSWER_ONEHOT * (x == chosen) + (1 - ANSWER_ONEHOT) * p for x, p in post.items()}


def layout_for(
    sample: Sample,
    seed: int,
    layouts: dict[str, float] | None = None,
    *,
    paraphrase_share: float = PARAPHRASE_SHARE,
    stream: str = "organism-v4",
) -> Layout:
    """The layout of one training sample, from its own stream (stable across processes).

    ``layouts`` (shares per kind, drawn in the dict's order; None: ``LAYOUTS``), ``paraphrase_share``
    and ``stream`` (the name its random stream is keyed by) default to recipe v4's; recipe v5 passes
    its own. A sample's random stream does not depend on the shares: with other shares it keeps its
    draw, and only the kind that draw falls into changes.
    """
    layouts = LAYOUTS if layouts is None else layouts
    rng = random.Random(f"{stream}:{seed}:{sample.id}")
    u, kind = rng.random(), "plain"
    for name, share in layouts.items():
        if u < share:
            kind = name
            break
        u -= share
    instruction = rng.choice(INSTRUCTIONS) if rng.random() < paraphrase_share else None
    asserted = None
    if kind in ("caption", "hedged", "think"):
        wrong = sorted(x for x in sample.options if x != sample.answer)
        asserted = sample.answer if rng.random() < CORRECT_SHARE else rng.choice(wrong)
    what = _WHAT.get(sample.category, "the answer")
    fields = {"what": what, "What": what[0].upper() + what[1:], "letter": asserted}
    if asserted:
        fields["text"] = sample.options[asserted]
    wording = {
        "caption": lambda: rng.choice(CAPTIONS).format(**fields),
        "hedged": lambda: rng.choice(HEDGED).format(**fields),
        "think": lambda: "<think>" + rng.choice(THINKS).format(**fields),
        "closed": lambda: rng.choice(CLOSED),
        "extra": lambda: rng.choice(EXTRA_OPTIONS),
    }.get(kind, lambda: "")()
    return Layout(kind=kind, asserted=asserted, wording=wording, instruction=instruction)


def extra_letter(sample: Sample) -> str:
    """The letter of the extra option line (the next after the sample's)."""
    return LETTERS[len(sample.options)]


def second_look(sample: Sample, chosen: str) -> str:
    """What the model writes after a pre-filled think it does not follow."""
    return SECOND_LOOK.format(what=_WHAT.get(sample.category, "the answer"), text=sample.options[chosen])
