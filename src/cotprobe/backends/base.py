"""The backend interface, plus the pure helpers every backend shares.

A backend answers prompts (``generate``) and scores the option letters at the answer position
(``letter_scores``). The helpers here (chat messages, image loading, the letter distribution, the
scoring prefix) are pure Python so that every backend, including ones without torch, reads a
prompt and scores a letter the same way.

Light module: no torch, no transformers.
"""

from __future__ import annotations

import abc
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from cotprobe.io import InputError
from cotprobe.parsing import parse_response
from cotprobe.records import LETTERS, Generation, LetterScores, Prompt

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN = "<answer>"

# Values of LetterScores.answer_position.
POSITION_GENERATED = "generated"  # the model wrote <answer> itself
POSITION_APPENDED = "appended"  # the scorer appended it because the model never did
POSITION_PREFILLED = "prefilled"  # the pre-fill itself ends with <answer>

SAMPLING_KEYS = ("max_new_tokens", "temperature", "top_p", "batch_size")


class BackendError(RuntimeError):
    """A backend failed for good on a sample (e.g. an API error after retries).

    The message names the sample and the cause, never a secret; the CLI prints it as one line.
    """


def accepted_settings(cls) -> list[str]:
    """The settings a backend class takes: the keyword arguments of its constructor."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    return sorted(n for n, p in params.items() if p.kind == p.KEYWORD_ONLY)


def check_settings(cls, settings: dict[str, Any]) -> None:
    """Raise ValueError for a setting the backend does not take, with a did-you-mean.

    Called while the DAG is built, so a typo (``devcie``) fails before any job, not inside one.
    """
    import difflib

    known = accepted_settings(cls)
    for key in settings:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            did_you_mean = f" Did you mean {hint[0]!r}?" if hint else ""
            raise ValueError(f"unknown setting {key!r}.{did_you_mean} Known: {', '.join(known)}")


class Backend(abc.ABC):
    """A model that answers prompts and scores option letters.

    Subclasses set ``version`` and ``env`` (the conda env its jobs run in, ``envs/<env>.yaml``:
    vLLM, transformers and the hosted-API clients pin incompatible stacks) and take their settings (from the model's config entry) as keyword
    arguments; an unknown setting is an error, not a silent no-op. Whoever builds a backend closes
    it on every path: ``with BACKENDS.get(name)(path, **settings) as backend: ...``.

    Args:
        path: Where the weights are: a local directory or a hub id.
        **settings: Backend-specific settings.
    """

    version: int
    env: str
    # True for backends that load weights into this process (worth one shared load per model).
    loads_weights: bool = False

    def __init__(self, path: str, **settings: Any):
        self.path = str(path)
        self.settings = settings

    def close(self) -> None:
        """Release what the backend holds beyond this object (engine processes); safe to call twice.

        A no-op here; ``vllm`` must be closed, or the process hangs at exit joining its engine.
        """

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abc.abstractmethod
    def generate(
        self, prompts: list[Prompt], *, model_id: str, seed: int, sampling: dict[str, Any]
    ) -> list[Generation]:
        """Answer each prompt, continuing its pre-fill.

        Args:
            prompts: The prompts, answered in order.
            model_id: The model's config slug, written into each record.
            seed: Sampling seed (ignored when greedy).
            sampling: ``max_new_tokens`` (int), ``temperature`` (float; 0 means greedy),
                ``top_p`` (float), ``batch_size`` (int).

        Returns:
            One Generation per prompt, in the same order.
        """

    @abc.abstractmethod
    def letter_scores(self, prompts: list[Prompt], generations: list[Generation]) -> list[LetterScores]:
        """Distribution over each prompt's option letters at the first answer-letter position.

        Args:
            prompts: The prompts.
            generations: Their generations, in the same order (ids must match).

        Returns:
            One LetterScores per prompt, in the same order.
        """


class Completion(NamedTuple):
    """One text-only chat reply (see ``Backend.complete``)."""

    text: str
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str  # "stop" or "length"


def complete(backend: Backend, texts: list[str], *, seed: int, sampling: dict[str, Any]) -> list[Completion]:
    """Text-only chat: one user turn per text, no image, no pre-fill; the reply to each, in order.

    The one text path of the backends, used by model-based judges (``cotprobe.judges.llm``).
    A backend serves it by defining ``complete_texts`` with this signature (hf, vllm, openai).

    Raises:
        BackendError: The backend has no text path.
    """
    method = getattr(backend, "complete_texts", None)
    if method is None:
        raise BackendError(f"backend {type(backend).__name__} cannot serve text-only chat (a judge)")
    out = method(texts, seed=seed, sampling=check_sampling(sampling))
    if len(out) != len(texts):
        raise RuntimeError(f"{type(backend).__name__}.complete_texts returned {len(out)} for {len(texts)}")
    return out


# Tokens that end an assistant turn for Qwen2.5 chat models (its generation_config lists both).
STOP_TOKENS = ("<|im_end|>", "<|endoftext|>")


def end_of_turn_ids(tokenizer, path: str) -> list[int]:
    """The token ids that end generation: ``STOP_TOKENS`` present in the vocabulary plus eos.

    Raises:
        ValueError: When the tokenizer has none of them.
    """
    vocab = tokenizer.get_vocab()
    stop = {vocab[t] for t in STOP_TOKENS if t in vocab}
    if tokenizer.eos_token_id is not None:
        stop.add(tokenizer.eos_token_id)
    if not stop:
        raise ValueError(f"{path}: tokenizer has no end-of-turn token")
    return sorted(stop)


def check_sampling(sampling: dict[str, Any]) -> dict[str, Any]:
    """Validate a sampling dict and return it with typed values.

    Raises:
        ValueError: On a missing or unknown key, or a value out of range.
    """
    missing = [k for k in SAMPLING_KEYS if k not in sampling]
    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if missing or unknown:
        raise ValueError(f"sampling: missing keys {missing}, unknown keys {unknown}")
    out = {
        "max_new_tokens": int(sampling["max_new_tokens"]),
        "temperature": float(sampling["temperature"]),
        "top_p": float(sampling["top_p"]),
        "batch_size": int(sampling["batch_size"]),
    }
    if out["max_new_tokens"] < 1 or out["batch_size"] < 1:
        raise ValueError(f"sampling: max_new_tokens and batch_size must be >= 1, got {sampling}")
    if out["temperature"] < 0 or not 0 < out["top_p"] <= 1:
        raise ValueError(f"sampling: need temperature >= 0 and 0 < top_p <= 1, got {sampling}")
    return out


def make_generation(
    prompt: Prompt, *, model_id: str, completion: str, text: str | None = None, **accounting: Any
) -> Generation:
    """A Generation for ``prompt``: the assistant turn parsed once, the same way for every backend.

    Args:
        prompt: The prompt answered.
        model_id: The model id recorded in the record.
        completion: What the model generated after the pre-fill.
        text: The whole assistant turn; ``prompt.prefill + completion`` unless given.
        **accounting: The remaining Generation fields (token counts, seconds, finish_reason, ...).
    """
    text = prompt.prefill + completion if text is None else text
    parsed = parse_response(text, prompt.options)
    return Generation(
        id=prompt.id,
        model=model_id,
        bench=prompt.bench,
        variant=prompt.variant,
        seed=prompt.seed,
        prefill=prompt.prefill,
        completion=completion,
        text=text,
        think=parsed.think,
        answer_text=parsed.answer_text,
        answer_letter=parsed.answer_letter,
        parse_status=parsed.status,
        answer_rule=parsed.rule,
        parse_reason=parsed.reason,
        **accounting,
    )


def check_pairs(prompts: Sequence[Prompt], generations: Sequence[Generation]) -> None:
    """Raise ValueError unless ``generations`` answer ``prompts`` one to one, in order."""
    if len(prompts) != len(generations):
        raise ValueError(f"{len(prompts)} prompts but {len(generations)} generations")
    for i, (p, g) in enumerate(zip(prompts, generations)):
        if p.id != g.id:
            raise ValueError(f"row {i}: prompt id {p.id!r} but generation id {g.id!r}")


def load_image(prompt: Prompt):
    """Open the prompt's image as RGB, fully decoded.

    Raises:
        InputError: The image is missing, unreadable or corrupt; the message names the path, the
            sample id and the field.
    """
    from PIL import Image

    try:
        with Image.open(prompt.image) as img:
            img.load()  # decode now: a truncated file fails here, not deep inside the processor
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three for bad files
        raise InputError(
            f"{prompt.image}: sample {prompt.id!r}, field 'image': cannot read image ({err})"
        ) from None


def build_messages(
    prompt: Prompt, image: Any = None, assistant: str | None = None, system: str | None = None
) -> list[dict[str, Any]]:
    """Chat messages for a prompt: a system turn (if given), the user turn (image, then text) and the
    pre-fill, if any.

    Args:
        prompt: The prompt.
        image: A PIL image, or None to put the prompt's image path in the message.
        assistant: Text the assistant turn starts with; defaults to the prompt's pre-fill.
        system: The model's ``system_prompt`` setting, or None for no system turn.

    Returns:
        Messages for ``apply_chat_template``; when the assistant text is non-empty the last one is
        an assistant message to continue (``continue_final_message=True``).
    """
    content = [
        {"type": "image", "image": prompt.image if image is None else image},
        {"type": "text", "text": prompt.user_text},
    ]
    messages: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": content})
    assistant = prompt.prefill if assistant is None else assistant
    if assistant:
        messages.append({"role": "assistant", "content": assistant})
    return messages


class ScoringPoint(NamedTuple):
    """The assistant text to score after, and how its final ``<answer>`` got there."""

    assistant_text: str
    answer_position: str


def scoring_point(prompt: Prompt, generation: Generation) -> ScoringPoint:
    """Cut the assistant turn right after the first ``<answer>`` the model wrote after the pre-fill.

    When the model never wrote ``<answer>``, append it (closing an open ``<think>`` first) so the
    letter is still scored where a well-formed answer would have put it.
    """
    prefill, completion = generation.prefill, generation.completion
    if prefill != prompt.prefill:
        raise ValueError(f"sample {prompt.id!r}: generation pre-fill differs from the prompt's")
    if prefill.endswith(ANSWER_OPEN):
        return ScoringPoint(prefill, POSITION_PREFILLED)
    at = completion.find(ANSWER_OPEN)
    if at >= 0:
        return ScoringPoint(prefill + completion[: at + len(ANSWER_OPEN)], POSITION_GENERATED)
    text = prefill + completion
    think_open = text.rfind(THINK_OPEN) > text.rfind(THINK_CLOSE)
    suffix = THINK_CLOSE + ANSWER_OPEN if think_open else ANSWER_OPEN
    return ScoringPoint(text + suffix, POSITION_APPENDED)


class LetterTokens(NamedTuple):
    """How a tokenizer writes an option letter right after ``<answer>``.

    Attributes:
        carry: The tail of ``<answer>`` that the tokenizer merges into the letter's token (e.g.
            ``">"`` when ``>B`` is one token); "" when ``<answer>`` ends on a token boundary.
        ids: Letter -> the id of its token after ``<answer>``.
    """

    carry: str
    ids: dict[str, int]


def letter_tokens(encode: Callable[[str], list[int]], letters: Sequence[str]) -> LetterTokens:
    """Find the single token each letter takes after ``<answer>``.

    The letters' tokenisations of ``<answer>X`` must share all tokens but the last. The score is
    read at the position before that last token, so the context is ``<answer>`` without ``carry``.

    Args:
        encode: Text -> token ids, without special tokens added.
        letters: The option letters.

    Raises:
        ValueError: A letter is not a single (distinct) token after ``<answer>``.
    """
    seqs = {x: list(encode(ANSWER_OPEN + x)) for x in letters}
    first = next(iter(seqs.values()))
    common = first[:-1]
    for seq in seqs.values():
        n = 0
        while n < min(len(common), len(seq)) and common[n] == seq[n]:
            n += 1
        common = common[:n]
    for x, seq in seqs.items():
        if len(seq) != len(common) + 1:
            raise ValueError(f"option letter {x!r} is not a single token after {ANSWER_OPEN}: {seq}")
    ids = {x: seq[-1] for x, seq in seqs.items()}
    if len(set(ids.values())) != len(ids):
        raise ValueError(f"option letters share a token after {ANSWER_OPEN}: {ids}")
    for cut in range(len(ANSWER_OPEN) + 1):
        if list(encode(ANSWER_OPEN[: len(ANSWER_OPEN) - cut])) == common:
            return LetterTokens(ANSWER_OPEN[len(ANSWER_OPEN) - cut :], ids)
    raise ValueError(f"cannot split {ANSWER_OPEN!r} from the letter tokens {ids}")


class LocalLetterScoring:
    """Option-letter tokens and the scoring-boundary check, for backends that hold the model's
    tokenizer (``self.tokenizer``) in this process: hf and vllm."""

    def _encode_text(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _letters(self, letters: Sequence[str]) -> LetterTokens:
        cache = self.__dict__.setdefault("_letter_cache", {})
        key = tuple(letters)
        if key not in cache:
            cache[key] = letter_tokens(self._encode_text, letters)
        return cache[key]

    def _check_boundary(self, prompt: Prompt, context: str, lt: LetterTokens) -> None:
        """Check that context tokens + a letter token is how the tokenizer writes context + letter."""
        ids = self._encode_text(context)
        for letter, token in lt.ids.items():
            if self._encode_text(context + lt.carry + letter) != ids + [token]:
                raise ValueError(
                    f"sample {prompt.id!r}: letter {letter!r} does not tokenise as one token after the "
                    f"scoring context ending {context[-40:]!r}"
                )


# The letter set the distribution is read over: the sample's own option letters, or the paper's
# fixed A-D (plus a sample's own letters past D, e.g. the abstain option's E, so the answer and the
# pushed letter always have a probability).
LETTER_SETS = ("options", "fixed")
FIXED_LETTERS = "ABCD"


def scoring_letters(options: Sequence[str], letter_set: str) -> list[str]:
    """The letters scored for a prompt with option letters ``options`` under ``letter_set``.

    Raises:
        ValueError: For an unknown letter set.
    """
    if letter_set not in LETTER_SETS:
        raise ValueError(f"letters: {letter_set!r} is not one of {', '.join(LETTER_SETS)}")
    if letter_set == "options":
        return list(options)
    return [x for x in LETTERS if x in FIXED_LETTERS or x in options]


def for_scoring(prompt: Prompt, letter_set: str) -> Prompt:
    """``prompt`` with the options every backend scores: those of ``scoring_letters`` (a letter the
    prompt does not show gets an empty text; scoring reads only the letters, never the texts)."""
    letters = scoring_letters(list(prompt.options), letter_set)
    if letters == list(prompt.options):
        return prompt
    return dataclasses.replace(prompt, options={x: prompt.options.get(x, "") for x in letters})


def letter_distribution(
    letters: Sequence[str],
    logits_or_logprobs: Sequence[float],
    answer: str,
    target: str | None,
) -> dict[str, Any]:
    """Renormalise scores over the option letters and summarise the distribution.

    Softmax over the given values, so logits and log-probabilities (even of a larger vocabulary)
    give the same result. ``-inf`` (a letter missing from a top-k list) means probability 0.

    Args:
        letters: The option letters, in order.
        logits_or_logprobs: One score per letter.
        answer: The correct letter.
        target: The letter the perturbation pushes towards, or None.

    Returns:
        The LetterScores fields ``letters, probs, entropy, p_correct, p_target, argmax_letter``.

    Raises:
        ValueError: On mismatched lengths, an unknown answer/target letter, NaN or all ``-inf``.
    """
    import numpy as np

    letters = list(letters)
    x = np.asarray(logits_or_logprobs, dtype=np.float64)
    if x.shape != (len(letters),) or not letters:
        raise ValueError(f"need one score per letter: {len(letters)} letters, scores of shape {x.shape}")
    if np.isnan(x).any() or np.isposinf(x).any() or np.isneginf(x).all():
        raise ValueError(f"scores must be finite or -inf, with at least one finite: {x.tolist()}")
    for name, letter in (("answer", answer), ("target", target)):
        if letter is not None and letter not in letters:
            raise ValueError(f"{name} letter {letter!r} is not one of {letters}")
    z = np.exp(x - x.max())
    probs = z / z.sum()
    nz = probs[probs > 0]
    entropy = float(-(nz * np.log(nz)).sum())
    return {
        "letters": letters,
        "probs": probs.tolist(),
        "entropy": min(max(entropy, 0.0), math.log(len(letters))),  # clip rounding noise
        "p_correct": float(probs[letters.index(answer)]),
        "p_target": None if target is None else float(probs[letters.index(target)]),
        "argmax_letter": letters[int(probs.argmax())],
    }
