"""Recipe ``v5`` of the model organism: recipe v4 with the option lines kept at a fixed distance.

The organism's think re-copies the prompt's option lines, and it finds them at a constant distance
back (``cotprobe.models.organism``). In v4 a paraphrased instruction replaced the evaluation's after the
options, which moved that distance in a fifth of the training prompts and for every text length.
v5 keeps everything between the last option line and the think as the evaluation renders it:

- A paraphrased instruction is an extra first line of the user turn (before any caption and the
  question); the evaluation's instruction always stays after the options.
- Extra option lines (which also move the distance) are rarer: ``LAYOUTS["extra"]``.
- More of the data is the plain prompt, where the think reads the image (v4: 37 %).
- A planted think multiplies the odds of what it asserts by less than in v4 (``TEXT_ODDS``), so
  on easy items the image overrules a wrong think (the "second look" continuation) in a real
  share of the think samples, not in about 1 % of the data; P(correct) on base then tells which
  items survive a wrong think.

The wordings, the designed posterior and the soft answer letters are v4's
(``cotprobe.models.organism_v4``); none of them is an evaluation variant's.
"""

from __future__ import annotations

from cotprobe.models import organism_v4
from cotprobe.models.organism_v4 import Layout
from cotprobe.records import Sample
from cotprobe.variants import render_user_text

# Layout shares; the rest (53 %) is the plain prompt.
LAYOUTS = {"caption": 0.12, "hedged": 0.08, "think": 0.20, "closed": 0.04, "extra": 0.03}
PARAPHRASE_SHARE = 0.2
# Odds multipliers of the asserted option. A wrong think is followed when the image's support
# for the answer is below 10 / (10 + 3) ~ 0.77 (v4: 30, followed below ~0.91, nearly always).
TEXT_ODDS = {"caption": 12.0, "hedged": 2.0, "think": 10.0}


def layout_for(sample: Sample, seed: int, layouts: dict[str, float] | None = None) -> Layout:
    """The layout of one training sample, from its own stream (not v4's).

    ``layouts`` replaces ``LAYOUTS`` (shares per kind; the rest is the plain prompt).
    """
    return organism_v4.layout_for(
        sample, seed, layouts=LAYOUTS if layouts is None else layouts, paraphrase_share=PARAPHRASE_SHARE,
        stream="organism-v5",
    )  # fmt: skip


def posterior(sample: Sample, layout: Layout) -> dict[str, float]:
    """The designed belief over the options, with v5's text odds."""
    return organism_v4.posterior(sample, layout, text_odds=TEXT_ODDS)


def user_text(question: str, options: dict[str, str], caption: str | None, instruction: str | None) -> str:
    """The user turn: the paraphrased instruction (if any) first, then what the evaluation renders."""
    text = render_user_text(question, options, caption)
    return f"{instruction}\n{text}" if instruction else text
