"""The optional LLM answer extractor: a language model reads the answers the rules cannot (off by default).

As VLMEvalKit does for multiple-choice answers, a model is shown the question, the options and
the answer block, and names the option it chooses or ``NONE``. It runs in the parse stage
(``cotprobe parse --extractor``), after the rules of ``cotprobe.parsing``, and only on rows
whose rules failed on an answer block that is there (``SENT_RULES``):

* sent: ``unread`` (names no option letter or text) and ``not_an_option`` (names a letter outside
  the options, possibly with an option's content);
* not sent: rows the rules read; ``no_answer`` and ``empty`` (no answer to read); ``ambiguous``
  (the answer offers two options: a hedge is recorded as one, not resolved by a guess).

The question is a versioned template file, ``judges/prompts/<prompt>.txt`` with exactly the slots
``{question}``, ``{options}`` and ``{answer}`` (``extract_v1``). The reply must be one option letter
or ``NONE`` (``parse_reply``: a leading closed ``<think>`` block, whitespace, markdown, brackets,
quotes and a final period aside); anything else reads nothing. A row the model reads gets its
letter, ``answer_rule: "llm"`` and a ``parse_reason`` naming the extractor; a row it does not read
keeps its letter (none), status and rule, and its ``parse_reason`` adds why. Every sent row keeps
the raw reply (``extractor_output``; None on rows not sent).

Identity: the parse rule's param holds the extractor's args, ``EXTRACTOR_VERSION``, the template's
SHA-256 and the backend's version (``Extractor.spec``): turning the extractor on, or changing any of
these, re-parses and recomputes what reads the parsed files, never regenerates. A request that
fails for good (after the backend's retries) fails the cell with a message naming the sample.

Light at import: the backend loads on the first ``extract`` that has rows to send.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, ClassVar

from cotprobe.judges.llm import load_template
from cotprobe.parsing import RULE_LLM, RULE_NOT_OPTION, RULE_UNREAD
from cotprobe.records import PARSE_NO_THINK, PARSE_OK, ParsedAnswer, Prompt

# Bump whenever which rows are sent, the reply parsing or the records may change.
EXTRACTOR_VERSION = 1
SLOTS = frozenset({"question", "options", "answer"})
SENT_RULES = (RULE_UNREAD, RULE_NOT_OPTION)
NONE_MARKER = "NONE"
SAMPLING_DEFAULTS = {"max_new_tokens": 16, "temperature": 0.0, "top_p": 1.0, "batch_size": 16}
# What identifies an extractor beyond its args (added by ``spec``; dropped again by ``from_spec``).
SPEC_EXTRAS = ("version", "prompt_sha256", "backend_version")

_LEADING_THINK = re.compile(r"^\s*<think>.*?</think>", re.DOTALL)
_DECOR = " \t\r\n*_`\"'()[]."
_SAMPLE = re.compile(r"^text (\d+)$")


def parse_reply(raw: str, letters: list[str], truncated: bool = False) -> tuple[str | None, str]:
    """The option letter a reply names, or None and why.

    Args:
        raw: The extractor's reply.
        letters: The sample's option letters.
        truncated: The reply stopped at the token limit (said in the reason).

    Returns:
        ``(letter, "")``, or ``(None, reason)`` for ``NONE`` or a reply that is not one option letter.
    """
    text = _LEADING_THINK.sub("", raw).strip(_DECOR)
    if text.upper() == NONE_MARKER:
        return None, "says it chooses none of the options (NONE)"
    if text in letters:
        return text, ""
    shown = raw if len(raw) <= 60 else raw[:57] + "..."
    cut = " (it stopped at the token limit)" if truncated else ""
    return None, f"reply {shown!r} is not one option letter ({', '.join(letters)}) or {NONE_MARKER}{cut}"


def is_sent(row: ParsedAnswer) -> bool:
    """Whether the extractor is asked about this row (see the module docstring)."""
    return row.answer_letter is None and row.answer_text is not None and row.answer_rule in SENT_RULES


class Extractor:
    """An LLM that maps an answer block to an option letter.

    Args:
        backend: Registered backend with a text path (the workflow allows ``openai``: any
            OpenAI-compatible server, hosted or a local ``vllm serve``).
        path: The served model name (or hub id / directory for an in-process backend).
        settings: The backend's settings (``base_url``, ``api_key_env``, ``max_concurrency``, ...).
        sampling: ``max_new_tokens``, ``temperature``, ``top_p``, ``batch_size`` (defaults
            ``SAMPLING_DEFAULTS``; greedy).
        prompt: Name of the prompt template (``judges/prompts/<name>.txt``).
    """

    version: ClassVar[int] = EXTRACTOR_VERSION
    defaults: ClassVar[dict[str, Any]] = {
        "backend": "openai",
        "path": "",
        "settings": {},
        "sampling": {},
        "prompt": "extract_v1",
    }

    def __init__(self, **args: Any):
        from cotprobe.backends import BACKENDS
        from cotprobe.backends.base import check_sampling, check_settings

        unknown = sorted(set(args) - set(self.defaults))
        if unknown:
            raise ValueError(f"extractor: unknown argument(s) {unknown} (accepted: {sorted(self.defaults)})")
        self.args: dict[str, Any] = {**self.defaults, **args}
        if not self.args["path"]:
            raise ValueError("extractor: argument 'path' is required (the served model name)")
        if self.args["backend"] not in BACKENDS:
            raise ValueError(
                f"extractor: unknown backend {self.args['backend']!r} (known: {BACKENDS.names()})"
            )
        check_settings(BACKENDS.get(self.args["backend"]), self.args["settings"])
        self.sampling = check_sampling({**SAMPLING_DEFAULTS, **self.args["sampling"]})
        self.template = load_template(self.args["prompt"], SLOTS)

    @classmethod
    def spec(cls, args: dict[str, Any]) -> dict[str, Any]:
        """The parse rule's param: the args (defaults filled), this version, the template's hash and
        the backend's version."""
        from cotprobe.backends import BACKENDS

        full = {**cls.defaults, **args}
        return {
            **full,
            "version": cls.version,
            "prompt_sha256": load_template(full["prompt"], SLOTS).sha256,
            "backend_version": BACKENDS.version(full["backend"]),
        }

    @classmethod
    def from_spec(cls, spec: dict[str, Any]) -> Extractor:
        return cls(**{k: v for k, v in spec.items() if k not in SPEC_EXTRAS})

    @property
    def name(self) -> str:
        """How records name this extractor: its model and template."""
        return f"LLM extractor {self.args['path']} ({self.args['prompt']})"

    def render(self, prompt: Prompt, answer_text: str) -> str:
        options = "\n".join(f"{letter}. {text}" for letter, text in prompt.options.items())
        return self.template.text.format(
            question=prompt.question.strip(), options=options, answer=answer_text.strip()
        )

    def extract(self, pairs: list[tuple[Prompt, ParsedAnswer]]) -> list[ParsedAnswer]:
        """The rows, with those the rules could not read (``is_sent``) read by the model where it can.

        Raises:
            BackendError: A request failed for good; the message names the extractor and sample.
        """
        from cotprobe.backends import BACKENDS
        from cotprobe.backends.base import BackendError, complete

        sent = [i for i, (_, row) in enumerate(pairs) if is_sent(row)]
        out = [row for _, row in pairs]
        if not sent:
            return out
        texts = [self.render(pairs[i][0], pairs[i][1].answer_text) for i in sent]
        try:
            with BACKENDS.get(self.args["backend"])(self.args["path"], **self.args["settings"]) as backend:
                replies = complete(backend, texts, seed=0, sampling=self.sampling)
        except BackendError as err:
            # The backend names the request by its index among the texts sent; name the sample.
            index = str(getattr(err, "sample_id", ""))
            m = _SAMPLE.match(index)
            which = f" on sample {pairs[sent[int(m.group(1))]][0].id!r}" if m else ""
            why = str(err).removeprefix(f"sample {index!r}: ") if m else str(err)
            raise BackendError(f"{self.name} failed{which}: {why}") from None
        for i, reply in zip(sent, replies):
            prompt, row = pairs[i]
            letter, why = parse_reply(reply.text, list(prompt.options), reply.finish_reason == "length")
            if letter is None:
                out[i] = dataclasses.replace(
                    row, parse_reason=f"{row.parse_reason}; {self.name}: {why}", extractor_output=reply.text
                )
            else:
                out[i] = dataclasses.replace(
                    row,
                    answer_letter=letter,
                    parse_status=PARSE_OK if row.think is not None else PARSE_NO_THINK,
                    answer_rule=RULE_LLM,
                    parse_reason=f"read by the {self.name}; the rules found {row.answer_rule}: {row.parse_reason}",
                    extractor_output=reply.text,
                )
        return out
