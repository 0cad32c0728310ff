"""The records that flow between stages: the file-level interface of the pipeline.

Every stage reads and writes JSON Lines (one record per line, key order as below) except the
letter logits, which are a parquet table. Image paths are relative to the workflow's working
directory (the repository root when run with ``snakemake``), e.g.
``results/data/shapes/images/shapes-00003.png``.

Stage files (an ensemble of judges writes verdicts like any judge)::

    results/data/{bench}/samples.jsonl                      Sample
    results/prompts/{bench}/{variant}/seed{seed}.jsonl      Prompt
    results/prompts/{bench}/{variant}/seed{seed}.images/    an image variant's images (<sha256>.png)
    results/prompts/{bench}/{variant}/seed{seed}.report.json  its samples kept and skipped
    results/generations/{model}/{bench}/{variant}/seed{seed}.jsonl   Generation
    results/logits/{model}/{bench}/{variant}/seed{seed}.parquet      LetterScores (one row each)
    results/parsed/{model}/{bench}/{variant}/seed{seed}.jsonl        ParsedAnswer
    results/verdicts/{judge}/{model}/{bench}/{variant}/seed{seed}.jsonl  Verdict

Light module: no torch, no transformers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LETTERS = "ABCDEFGHIJ"

# A circular benchmark's samples are the rotations of an original item: ``<item id>~<rotation>``
# (``mmbench-241~2``, ``3dsrbench-VIN6MS3J~flip-1``). Metrics aggregate per original item.
CIRCULAR_SEP = "~"


def original_item(sample_id: str) -> str:
    """The original item a sample id belongs to: the id itself unless it names a rotation."""
    return sample_id.split(CIRCULAR_SEP, 1)[0]


# Quadrants of the think/answer consistency x correctness grid, plus the explicit failure state.
QUADRANTS = (
    "consistent_correct",
    "inconsistent_correct",
    "consistent_incorrect",
    "inconsistent_incorrect",
)
UNPARSEABLE = "unparseable"

# Parse status of a generation (see cotprobe.parsing.parse_response).
PARSE_OK = "ok"  # <think>…</think><answer>X</answer>, X one of the options
PARSE_NO_ANSWER = "no_answer"  # no <answer>…</answer> block
PARSE_BAD_ANSWER = "bad_answer"  # <answer> present but no option read from it (answer_rule says why)
PARSE_NO_THINK = "no_think"  # answer fine but no closed <think> block


@dataclass
class Sample:
    """One normalised multiple-choice sample of a benchmark.

    Attributes:
        id: Unique within the benchmark; stable across runs (slug-like string).
        image: Path of the image file (relative to the workflow directory).
        question: The question text, without options.
        options: Letter -> option text, letters A, B, C, ... in display order.
        answer: The correct letter (a key of ``options``).
        category: Question type (e.g. ``left``, ``count``); selects perturbation templates.
        meta: Free-form, benchmark-specific facts (ground truth of the construction).
    """

    id: str
    image: str
    question: str
    options: dict[str, str]
    answer: str
    category: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Prompt:
    """A sample after a prompt variant: exactly what a backend is asked.

    Attributes:
        id: The sample id.
        bench, variant, seed: The cell.
        image: Image path: the sample's under every textual variant; an image variant's own
            transformed copy (``results/prompts/{bench}/{variant}/seed{seed}.images/<hash>.png``).
        question: The sample's question, unperturbed by the textual variants; ``mirror`` swaps its
            left/right words to match the mirrored image.
        options: Letter -> text as shown to the model (``abstain`` adds one).
        answer: The correct letter (an image variant relabels it where the transform moves it:
            ``mirror`` from a "left" option to the "right" one).
        category: The sample's category (``mirror`` swaps the ``shapes`` categories left/right).
        user_text: The full text of the user turn (caption, question, option lines, instruction);
            the image goes before it.
        prefill: Text the assistant turn starts with; the model continues it ("" for none).
        target_letter: The letter the perturbation pushes towards (a wrong letter for the wrong_*
            variants, the answer for correct_*), or None when the variant pushes nowhere.
        caption: The caption put before the question, or None.
        variant_version: Version of the variant plugin that made this record.
        abstain_letter: The letter of the added "I'm not sure" option (the abstain variants), or
            None when the prompt offers none; answering it is an abstention.
    """

    id: str
    bench: str
    variant: str
    seed: int
    image: str
    question: str
    options: dict[str, str]
    answer: str
    category: str
    user_text: str
    prefill: str = ""
    target_letter: str | None = None
    caption: str | None = None
    variant_version: int = 1
    abstain_letter: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Generation:
    """One model response to one prompt.

    Attributes:
        id: The sample id.
        model, bench, variant, seed: The cell.
        prefill: The assistant pre-fill the model continued.
        completion: The text the model generated after the pre-fill (special tokens removed).
        text: ``prefill + completion``, the whole assistant turn that is parsed.
        think, answer_text, answer_letter, parse_status, answer_rule, parse_reason: The parse of
            ``text`` made when the record was written (``ParsedAnswer`` says what each is), kept
            for reading by eye. Stages re-parse ``text`` with the current parser
            (``cotprobe.parsing.reparse``, the ``parse`` stage), so a parser change never
            regenerates; records written before ``answer_rule`` existed lack the last two.
        prompt_tokens, completion_tokens: Token counts.
        seconds: Wall time of the sample's batch divided by the batch size.
        finish_reason: ``stop`` (eos) or ``length`` (max tokens).
        delivery: How the pre-fill reached the model: ``prefill`` (the assistant turn was continued;
            also every prompt without a pre-fill), ``fallback`` (the API cannot continue an
            assistant turn, so the user turn asked the model to begin with the pre-fill, and it
            did), ``fallback_ignored`` (asked, but the reply did not begin with it). See
            ``cotprobe.backends.openai_compat``.
        cost_usd: API cost of the request in US dollars, or None when no price is configured
            (local backends).
    """

    id: str
    model: str
    bench: str
    variant: str
    seed: int
    prefill: str
    completion: str
    text: str
    think: str | None
    answer_text: str | None
    answer_letter: str | None
    parse_status: str
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    finish_reason: str
    delivery: str = "prefill"
    cost_usd: float | None = None
    answer_rule: str | None = None
    parse_reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ParsedAnswer:
    """A generation's text parsed by the current parser: one row of ``results/parsed/...jsonl``.

    Written by the parse stage (``cotprobe parse``), whose rule takes ``parsing.PARSER_VERSION``
    as a param: a parser change reruns it (and the verdicts, metrics) but not the generation.

    Attributes:
        id: The sample id.
        think: Content of the last closed ``<think>`` block, or None.
        answer_text: Content of the last ``<answer>`` block, or None.
        answer_letter: The option letter read from ``answer_text``, or None.
        parse_status: One of ``ok``, ``no_answer``, ``bad_answer``, ``no_think``.
        answer_rule: The rule that read the letter (``parsing.ANSWER_RULES``, e.g. ``bold``), else
            why none was read (``parsing.PARSE_FAILURES``, e.g. ``ambiguous``).
        parse_reason: Why no letter was read, in words ("" when one was); for a letter read by the
            optional LLM extractor (``answer_rule`` ``llm``), the extractor and what the rules found.
        parser_version: ``parsing.PARSER_VERSION`` of the parser that wrote the row.
        extractor_output: The LLM extractor's raw reply on a row it was asked about (``cotprobe.extractor``),
            else None.
    """

    id: str
    think: str | None
    answer_text: str | None
    answer_letter: str | None
    parse_status: str
    answer_rule: str
    parse_reason: str
    parser_version: int
    extractor_output: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LetterScores:
    """Distribution over the answer letters at the first answer-letter position.

    One row of ``results/logits/...parquet``.

    Attributes:
        id: The sample id.
        letters: The sample's option letters, in order.
        probs: Probabilities over ``letters`` (renormalised; sums to 1).
        entropy: Shannon entropy of ``probs`` in nats (<= log(len(letters))).
        p_correct: Probability of the correct letter.
        p_target: Probability of the letter the perturbation pushes, or None.
        argmax_letter: The most probable letter.
        answer_position: ``generated`` when the model wrote ``<answer>``; ``appended`` when the
            scorer appended it to the think because the model never did; ``prefilled`` when the
            pre-fill itself ends with ``<answer>``.
        missing_reason: None for a real distribution. Otherwise why the backend could not read
            one (e.g. the API returned no log-probabilities); then ``probs`` is empty,
            ``entropy`` and ``p_correct`` are NaN, ``p_target`` is None, ``argmax_letter`` is "".
        letter_set: ``options`` (``letters`` are the sample's own option letters) or ``fixed``
            (the paper's A-D, plus the sample's letters past D); the model's ``generation.letters``.
    """

    id: str
    letters: list[str]
    probs: list[float]
    entropy: float
    p_correct: float
    p_target: float | None
    argmax_letter: str
    answer_position: str
    missing_reason: str | None = None
    letter_set: str = "options"


@dataclass
class Verdict:
    """A judge's reading of one generation.

    Attributes:
        id: The sample id.
        judge: The judge id (config slug).
        think_letter: The option the think finally settles on, or None when it settles on none.
        answer_letter: The generation's answer letter, or None.
        correct: Whether ``answer_letter`` is the correct letter (None when unparseable).
        consistent: Whether ``think_letter == answer_letter`` (None when unparseable).
        quadrant: One of QUADRANTS or ``unparseable``.
        reason: Why the verdict is unparseable ("" otherwise).
        judge_version: Version of the judge plugin.
        judge_output: The raw text of a model-based judge (None for the rule judge, and for
            samples it was not asked about, e.g. a generation without a think).
        votes: For an ensemble, each member judge's quadrant (None for a single judge).
        judge_thinking: A model judge's thinking mode as set in its config
            (``chat_template_kwargs.enable_thinking``: True or False), None where nothing set it
            (the rule judge, ensembles, models without the switch).
    """

    id: str
    judge: str
    think_letter: str | None
    answer_letter: str | None
    correct: bool | None
    consistent: bool | None
    quadrant: str
    reason: str = ""
    judge_version: int = 1
    judge_output: str | None = None
    votes: dict[str, str] | None = None
    judge_thinking: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def quadrant_of(consistent: bool, correct: bool) -> str:
    """Name the quadrant for a consistency/correctness pair."""
    return f"{'consistent' if consistent else 'inconsistent'}_{'correct' if correct else 'incorrect'}"


# ---- field checks for the readers of stage files (cotprobe.io.read_jsonl ``checks``) ----
def _text(value: Any, row: dict[str, Any]) -> str | None:
    return None if isinstance(value, str) else f"expected a string, got {type(value).__name__}"


def _id(value: Any, row: dict[str, Any]) -> str | None:
    return None if isinstance(value, str) and value else "expected a non-empty string"


def _text_or_none(value: Any, row: dict[str, Any]) -> str | None:
    return (
        None
        if value is None or isinstance(value, str)
        else f"expected a string or null, got {type(value).__name__}"
    )


def _options(value: Any, row: dict[str, Any]) -> str | None:
    if not isinstance(value, dict):
        return f"expected an object of letter -> option text, got {type(value).__name__}"
    if len(value) < 2:
        return "needs at least two options"
    for letter, text in value.items():
        if not (len(letter) == 1 and "A" <= letter <= "Z"):
            return f"option key {letter!r} is not a capital letter"
        if not isinstance(text, str):
            return f"option {letter}: expected a string, got {type(text).__name__}"
    return None


def _letter_of_options(value: Any, row: dict[str, Any]) -> str | None:
    options = row.get("options")
    if not isinstance(options, dict):
        return None  # reported by the options check
    if not isinstance(value, str) or value not in options:
        return f"{value!r} is not one of the options' letters ({', '.join(options)})"
    return None


def _letter_or_none(value: Any, row: dict[str, Any]) -> str | None:
    return None if value is None else _letter_of_options(value, row)


def _int(value: Any, row: dict[str, Any]) -> str | None:
    ok = isinstance(value, int) and not isinstance(value, bool)
    return None if ok else f"expected an integer, got {type(value).__name__}"


SAMPLE_CHECKS = {"id": _id, "image": _text, "question": _text, "options": _options,
                 "answer": _letter_of_options, "category": _text}  # fmt: skip
PROMPT_CHECKS = {**SAMPLE_CHECKS, "user_text": _text, "prefill": _text, "seed": _int,
                 "target_letter": _letter_or_none}  # fmt: skip
GENERATION_CHECKS = {"id": _id, "text": _text, "think": _text_or_none, "answer_letter": _text_or_none,
                     "parse_status": _text}  # fmt: skip


def _bool_or_none(value: Any, row: dict[str, Any]) -> str | None:
    return (
        None if value is None or isinstance(value, bool) else f"expected true, false or null, got {value!r}"
    )


def _quadrant(value: Any, row: dict[str, Any]) -> str | None:
    known = (*QUADRANTS, UNPARSEABLE)
    return None if value in known else f"{value!r} is not one of {', '.join(known)}"


VERDICT_CHECKS = {"id": _id, "quadrant": _quadrant, "answer_letter": _text_or_none, "think_letter": _text_or_none,
                  "correct": _bool_or_none, "consistent": _bool_or_none}  # fmt: skip


def load_records(path: str, cls, checks) -> list:
    """Records of ``cls`` from a stage file: every field without a default present, checked, ids unique."""
    from dataclasses import MISSING, fields

    from cotprobe.io import read_jsonl

    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    rows = read_jsonl(path, required=required, unique="id", checks=checks, non_empty=True)
    names = {f.name for f in fields(cls)}
    return [cls(**{k: v for k, v in row.items() if k in names}) for row in rows]


def load_samples(path: str) -> list[Sample]:
    return load_records(path, Sample, SAMPLE_CHECKS)


def load_prompts(path: str) -> list[Prompt]:
    return load_records(path, Prompt, PROMPT_CHECKS)


def load_generations(path: str) -> list[Generation]:
    return load_records(path, Generation, GENERATION_CHECKS)
