"""An LLM judge: a language model reads the think and names the option it finally settles on.

The model is served by any registered backend with a text path (``hf``, ``vllm``, ``openai``; see
``cotprobe.backends.base.complete``), loaded once per judged cell and asked in batches. The
question it is asked is a versioned template file, ``prompts/<name>.txt``, with exactly the
named slots ``{question}``, ``{options}``, ``{think}`` and ``{answer}``; the template's
SHA-256 is part of the judge's rule param, so editing a template reruns only its judge's cells.

The reply must end with ``Verdict: think=<letter or NONE>, agrees=<YES or NO>``. The parser
(``parse_reply``) is strict: it reads the *last* such line; a reply without one, a letter
that is not an option, or a line that contradicts itself (``think=B, agrees=YES`` for answer
``C``) gives no letter and a reason starting ``judge:``, so the verdict is ``unparseable``
rather than a silent default. The raw reply is kept in the verdict (``judge_output``).
A generation without a (non-empty) think is not sent: there is nothing to read.

Qwen3's chat template thinks by default: a Qwen3 judge must set
``settings.chat_template_kwargs.enable_thinking`` (true or false), and every verdict records it
(``judge_thinking``).

Light at import: the backend (and torch) load on the first ``read_thinks``.
"""

from __future__ import annotations

import hashlib
import re
import string
from functools import cache
from importlib import resources
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple

from cotprobe.judges.base import Judge, ThinkReading
from cotprobe.records import Generation, Prompt

if TYPE_CHECKING:
    from cotprobe.serving import Share

# Qwen3 checkpoints (Qwen/Qwen3-32B, a local copy named so): thinking mode must be set explicitly.
QWEN3 = re.compile(r"qwen3(?![.\d])", re.IGNORECASE)
SLOTS = frozenset({"question", "options", "think", "answer"})
SAMPLING_DEFAULTS = {"max_new_tokens": 1024, "temperature": 0.0, "top_p": 1.0, "batch_size": 8}
NO_ANSWER = "(no <answer> block)"

# "Verdict: think=C, agrees=YES", tolerating markdown (**Verdict:**, `C`) and brackets around
# the values; "<" is not tolerated, so the template's own "think=<the option letter...>" never reads.
_DECOR = r"[\s*_`\"'()\[\]]*"
_VERDICT = re.compile(
    r"verdict" + _DECOR + r"[:=]?" + _DECOR + r"think" + _DECOR + r"=" + _DECOR + r"(?P<think>[A-Za-z]+)"
    + _DECOR + r"[,;]?" + _DECOR + r"agrees" + _DECOR + r"=" + _DECOR + r"(?P<agrees>[A-Za-z]+)",
    re.IGNORECASE,
)  # fmt: skip


class Template(NamedTuple):
    name: str
    text: str
    sha256: str


@cache
def load_template(name: str, slots: frozenset[str] = SLOTS) -> Template:
    """The prompt template ``prompts/<name>.txt`` shipped with the package.

    Args:
        name: The template's file name without ``.txt``.
        slots: The named slots it must have (a judge's ``SLOTS``; the answer extractor's own).

    Raises:
        ValueError: No such template, or its slots are not exactly ``slots``.
    """
    folder = resources.files("cotprobe.judges") / "prompts"
    known = sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))
    if name not in known:
        raise ValueError(f"unknown prompt template {name!r} (known: {', '.join(known)})")
    text = (folder / f"{name}.txt").read_text(encoding="utf-8")
    found = {field for _, field, _, _ in string.Formatter().parse(text) if field is not None}
    if found != slots:
        raise ValueError(f"prompt template {name!r} has slots {sorted(found)}; expected {sorted(slots)}")
    return Template(name, text, hashlib.sha256(text.encode()).hexdigest())


def render(template: Template, prompt: Prompt, generation: Generation) -> str:
    """The judge's question about one generation."""
    options = "\n".join(f"{letter}. {text}" for letter, text in prompt.options.items())
    answer = NO_ANSWER if generation.answer_text is None else generation.answer_text.strip()
    return template.text.format(
        question=prompt.question.strip(),
        options=options,
        think=(generation.think or "").strip(),
        answer=answer,
    )


def parse_reply(
    raw: str, options: list[str], answer_letter: str | None, truncated: bool = False
) -> ThinkReading:
    """Read the last verdict line of a judge's reply.

    Args:
        raw: The judge's reply.
        options: The sample's option letters.
        answer_letter: The generation's answer letter (None when it has none: ``agrees`` is then
            not checked).
        truncated: The reply stopped at the token limit (said in the reason when no verdict is found).

    Returns:
        The letter the think settles on, or None with a reason (``judge: ...`` when the reply is
        unreadable or contradicts itself; ``think: ...`` when the judge says it settles on none).
        ``raw`` is kept in the reading.
    """
    matches = list(_VERDICT.finditer(raw))
    if not matches:
        why = " (it stopped at the token limit)" if truncated else ""
        return ThinkReading(None, f"judge: no 'Verdict: think=..., agrees=...' line in the reply{why}", raw)
    last = matches[-1]
    think, agrees = last.group("think").upper(), last.group("agrees").upper()
    if agrees not in ("YES", "NO"):
        return ThinkReading(None, f"judge: agrees={last.group('agrees')!r} is neither YES nor NO", raw)
    if think == "NONE":
        if agrees == "YES" and answer_letter is not None:
            return ThinkReading(None, "judge: contradicts itself (think=NONE, yet agrees=YES)", raw)
        return ThinkReading(None, "think: settles on no option (the judge says NONE)", raw)
    if think not in options:
        known = ", ".join(options)
        return ThinkReading(
            None, f"judge: think={last.group('think')!r} is not an option ({known}) or NONE", raw
        )
    if answer_letter is not None and (think == answer_letter) != (agrees == "YES"):
        return ThinkReading(
            None,
            f"judge: contradicts itself (think={think}, agrees={agrees}, but the answer is {answer_letter})",
            raw,
        )
    return ThinkReading(think, "", raw)


class LLMJudge(Judge):
    """A language model as judge.

    Args:
        backend: Registered backend serving the model (``hf``, ``vllm``, ``openai``).
        path: Hub id or directory (``hf``), or the served model name (``openai``).
        settings: Backend settings (e.g. ``device``/``dtype`` for hf; ``base_url``,
            ``api_key_env``, ``max_concurrency``, prices for openai).
        sampling: ``max_new_tokens``, ``temperature``, ``top_p``, ``batch_size`` (defaults
            ``SAMPLING_DEFAULTS``; greedy). ``batch_size`` is also the checkpoint interval.
        prompt: Name of the prompt template (``prompts/<name>.txt``).
    """

    version: ClassVar[int] = 2
    defaults: ClassVar[dict[str, Any]] = {
        "backend": "hf",
        "path": "",
        "settings": {},
        "sampling": {},
        "prompt": "consistency_v1",
    }

    def __init__(self, **args: Any):
        super().__init__(**args)
        from cotprobe.backends import BACKENDS
        from cotprobe.backends.base import check_sampling

        if not self.args["path"]:
            raise ValueError("LLMJudge: argument 'path' is required (hub id, directory or served model name)")
        if self.args["backend"] not in BACKENDS:
            raise ValueError(
                f"LLMJudge: unknown backend {self.args['backend']!r} (known: {BACKENDS.names()})"
            )
        template_kwargs = self.args["settings"].get("chat_template_kwargs") or {}
        if QWEN3.search(self.args["path"]) and not isinstance(template_kwargs.get("enable_thinking"), bool):
            raise ValueError(
                f"LLMJudge: {self.args['path']!r} is a Qwen3 model, whose chat template thinks unless told "
                "not to: set settings.chat_template_kwargs.enable_thinking to true or false"
            )
        self.sampling = check_sampling({**SAMPLING_DEFAULTS, **self.args["sampling"]})
        self.template = load_template(self.args["prompt"])
        self.chunk_size = self.sampling["batch_size"]
        self._backend = None
        self._lease = None
        # Set by the judge stage to use this host's shared server of the model (cotprobe.serving.Share).
        self.share: Share | None = None

    @classmethod
    def spec_extras(cls, args: dict[str, Any]) -> dict[str, Any]:
        """What identifies this judge's verdicts beyond its args: the template's hash, the backend's version."""
        from cotprobe.backends import BACKENDS

        prompt = args.get("prompt", cls.defaults["prompt"])
        backend = args.get("backend", cls.defaults["backend"])
        return {"prompt_sha256": load_template(prompt).sha256, "backend_version": BACKENDS.version(backend)}

    def backend(self):
        """The serving backend, on first use (``cotprobe.serving.open_backend``): this host's shared
        server of the model when ``share`` is set (the same load as the model's generation cells when
        it is also an evaluated model), else loaded in this process."""
        if self._backend is None:
            from cotprobe.backends import BACKENDS
            from cotprobe.serving import open_backend
            from cotprobe.specs import ModelParams

            # No generation: a judge samples per request. The load's identity (``spec_key``) leaves
            # generation out, so this load is shared with the model's generation cells.
            params = ModelParams(backend=self.args["backend"], path=self.args["path"], settings=self.args["settings"],
                                 generation={}, version=BACKENDS.get(self.args["backend"]).version)  # fmt: skip
            self._backend, self._lease = open_backend(self.args["path"], params, self.share)
        return self._backend

    def thinking(self) -> bool | None:
        value = (self.args["settings"].get("chat_template_kwargs") or {}).get("enable_thinking")
        return value if isinstance(value, bool) else None

    def close(self) -> None:
        """Close the backend if one was loaded (a vLLM engine left open hangs the process's exit),
        then give back the shared server's lease."""
        if self._backend is not None:
            self._backend.close()
        if self._lease is not None:
            self._lease.release()

    def read_thinks(self, pairs: list[tuple[Prompt, Generation]]) -> list[ThinkReading]:
        from cotprobe.backends.base import complete

        readings: list[ThinkReading | None] = [None] * len(pairs)
        asked = []
        for i, (_, g) in enumerate(pairs):
            if g.think is None:
                readings[i] = ThinkReading(None, "think: no closed <think> block")
            elif not g.think.strip():
                readings[i] = ThinkReading(None, "think: empty")
            else:
                asked.append(i)
        if asked:
            texts = [render(self.template, *pairs[i]) for i in asked]
            replies = complete(self.backend(), texts, seed=0, sampling=self.sampling)
            for i, reply in zip(asked, replies):
                prompt, generation = pairs[i]
                readings[i] = parse_reply(
                    reply.text,
                    list(prompt.options),
                    generation.answer_letter,
                    reply.finish_reason == "length",
                )
        return readings  # type: ignore[return-value]
