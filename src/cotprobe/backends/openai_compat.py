"""A backend for any OpenAI-compatible chat-completions endpoint.

Covers a ``vllm serve`` the user runs (or ``python -m cotprobe.serving.openai_server``), OpenAI's
hosted models and Gemini through Google's OpenAI-compatible endpoint. The base URL and the *name* of
the environment variable holding the key come from the model's ``settings`` in config::

    models:
      qwen25vl-7b-api:
        backend: openai
        path: qwen25vl                      # the served model name sent as ``model``
        settings: {base_url: "http://127.0.0.1:8000/v1", max_concurrency: 16}

Reasoning models (``reasoning: true``; OpenAI's o3 / o4-mini) reject ``temperature`` and
``top_p`` and count hidden reasoning in ``max_completion_tokens``: their requests carry
``max_completion_tokens`` (the ``max_new_tokens`` setting) and ``reasoning_effort`` (when set)
instead of ``temperature``, ``top_p`` and ``max_tokens``. ``chat_template_kwargs`` go to a vLLM
server in the request body (e.g. ``{enable_thinking: false}`` for a Qwen3 judge).

Failures: 429, 5xx, timeouts, connection errors and malformed bodies are retried; any other 4xx
fails the request at once with the API's own message (a request the API rejects will not pass
on a retry).

Pre-fill delivery (``prefill_mode``):

* ``continue`` (default): the pre-fill is a final assistant message, continued by the server
  (vLLM's ``continue_final_message: true, add_generation_prompt: false``). Records say
  ``delivery="prefill"``. Letter scores are read after prompt + pre-fill + think + ``<answer>``
  from ``top_logprobs`` of a one-token request.
* ``fallback``, for APIs that cannot continue an assistant turn (OpenAI, Gemini): the user turn
  ends with ``FALLBACK_INSTRUCTION`` (a blank line, then ``Begin your response with exactly: ``
  and the pre-fill). Nothing is prepended to the reply: a reply that begins with the pre-fill is
  split into ``prefill + completion`` (``delivery="fallback"``); one that does not keeps the
  model's own text as ``text`` and ``completion`` (``delivery="fallback_ignored"``). Prompts
  without a pre-fill are sent unchanged (``delivery="prefill"``). The letter position cannot be
  probed without continuing an assistant turn, so ``letter_scores`` returns explicit missing
  values (``missing_reason``).

The key is read once from the environment and handed to the client only; it never appears in
records, logs or error messages (messages from the server are redacted before they are quoted).

Client choice: the official ``openai`` package (optional extra ``api``), imported lazily so that
Snakemake can import this module at DAG-build time. It keeps the wire format right for every
provider; its own retries are off (``max_retries=0``) so that this module owns backoff, the
Retry-After header, the attempt count and the error message.

Light at import: no openai, no torch.
"""

from __future__ import annotations

import base64
import email.utils
import io
import logging
import math
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import urlparse

from cotprobe.backends.base import (
    Backend,
    BackendError,
    Completion,
    check_pairs,
    check_sampling,
    letter_distribution,
    make_generation,
    scoring_point,
)
from cotprobe.records import Generation, LetterScores, Prompt

log = logging.getLogger(__name__)

PREFILL_MODES = ("continue", "fallback")
FALLBACK_INSTRUCTION = "\n\nBegin your response with exactly: {prefill}"
DELIVERY_PREFILL, DELIVERY_FALLBACK, DELIVERY_IGNORED = "prefill", "fallback", "fallback_ignored"
# Key sent to servers that need none (vLLM's convention); the openai client refuses an empty key.
NO_KEY = "EMPTY"
_RETRY_STATUSES = frozenset({429})  # plus every 5xx
REASONING_EFFORTS = ("minimal", "low", "medium", "high")
_MASKED = re.compile(r"\S*\*{3,}\S*")  # "sk-ab***yz": a masked key as OpenAI quotes it


class APIRequestError(BackendError):
    """A request failed for good (after retries, or with a status that is not retried).

    Attributes:
        sample_id: The sample whose request failed.
        status: The HTTP status, or None for a timeout or connection error.
        attempts: How many times the request was sent.
    """

    def __init__(self, message: str, *, sample_id: str, status: int | None, attempts: int):
        super().__init__(message)
        self.sample_id = sample_id
        self.status = status
        self.attempts = attempts


class _Reply(NamedTuple):
    """The parts of one chat completion this backend uses."""

    content: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int
    top_logprobs: list[tuple[str, float]] | None  # at the first generated token; None if absent
    seconds: float


class OpenAIBackend(Backend):
    """Chat completions over HTTP, with a bounded pool, retries and cost accounting.

    Args:
        path: The model name sent in each request (``model``).
        base_url: The API root, e.g. ``http://127.0.0.1:8000/v1``.
        api_key_env: Name of the environment variable holding the key. Unset means no key (a
            local server); a placeholder is sent.
        max_concurrency: Requests in flight at once.
        timeout: Seconds per request attempt.
        max_retries: Retries after the first attempt, on 429/5xx, timeouts and connection
            errors; other statuses fail at once.
        backoff: First retry delay in seconds; doubles per retry, times a random factor in
            [0.5, 1] (jitter). A Retry-After header (seconds or HTTP date) replaces it.
        max_backoff: Cap on any delay, Retry-After included.
        prefill_mode: ``continue`` or ``fallback`` (see the module docstring).
        top_logprobs: Alternatives asked for at the letter position (OpenAI allows at most 20,
            vLLM ``--max-logprobs``); 0 turns letter scoring off (every score is missing).
        price_per_1k_input, price_per_1k_output: US dollars per 1000 prompt/completion tokens;
            ``cost_usd`` is recorded when both are set.
        image_format: ``PNG`` (lossless, default) or ``JPEG`` for the data URI of each image.
        reasoning: A reasoning model (o3, o4-mini): see the module docstring.
        reasoning_effort: ``minimal``, ``low``, ``medium`` or ``high`` (reasoning models only);
            unset leaves the API's default.
        chat_template_kwargs: Chat-template variables sent in each request body (vLLM servers).
    """

    version = 2
    env = "api"

    def __init__(
        self,
        path: str,
        *,
        base_url: str,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 8,
        timeout: float = 120.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        prefill_mode: str = "continue",
        top_logprobs: int = 20,
        price_per_1k_input: float | None = None,
        price_per_1k_output: float | None = None,
        image_format: str = "PNG",
        reasoning: bool = False,
        reasoning_effort: str | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
    ):
        super().__init__(
            path,
            base_url=base_url,
            api_key_env=api_key_env,
            max_concurrency=max_concurrency,
            timeout=timeout,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            prefill_mode=prefill_mode,
            top_logprobs=top_logprobs,
            price_per_1k_input=price_per_1k_input,
            price_per_1k_output=price_per_1k_output,
            image_format=image_format,
            reasoning=reasoning,
            reasoning_effort=reasoning_effort,
            chat_template_kwargs=chat_template_kwargs,
        )
        if reasoning_effort is not None and (not reasoning or reasoning_effort not in REASONING_EFFORTS):
            raise ValueError(
                f"reasoning_effort {reasoning_effort!r}: needs reasoning: true and one of {REASONING_EFFORTS}"
            )
        if chat_template_kwargs is not None and not isinstance(chat_template_kwargs, dict):
            raise ValueError(f"chat_template_kwargs must be a mapping, got {chat_template_kwargs!r}")
        if prefill_mode not in PREFILL_MODES:
            raise ValueError(f"prefill_mode must be one of {PREFILL_MODES}, got {prefill_mode!r}")
        if int(max_concurrency) < 1 or int(max_retries) < 0 or int(top_logprobs) < 0:
            raise ValueError("need max_concurrency >= 1, max_retries >= 0 and top_logprobs >= 0")
        if float(timeout) <= 0 or float(backoff) < 0 or float(max_backoff) < 0:
            raise ValueError("need timeout > 0, backoff >= 0 and max_backoff >= 0")
        if image_format.upper() not in ("PNG", "JPEG"):
            raise ValueError(f"image_format must be PNG or JPEG, got {image_format!r}")
        self.base_url = str(base_url)
        self.api_key_env = str(api_key_env)
        self.max_concurrency = int(max_concurrency)
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.prefill_mode = prefill_mode
        self.top_logprobs = int(top_logprobs)
        self.prices = (price_per_1k_input, price_per_1k_output)
        self.image_format = image_format.upper()
        self.reasoning = bool(reasoning)
        self.reasoning_effort = reasoning_effort
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self._openai = None
        self._client_lock = threading.Lock()
        self._images: dict[str, str] = {}
        self._images_lock = threading.Lock()
        if not os.environ.get(self.api_key_env) and urlparse(self.base_url).hostname not in (
            "127.0.0.1",
            "localhost",
            "::1",
        ):
            log.warning("environment variable %s is not set; sending no API key", self.api_key_env)

    # -- transport -------------------------------------------------------------------------

    def _client(self):
        """The shared client (thread-safe; its connection pool serves every worker)."""
        with self._client_lock:
            if self._openai is None:
                from openai import OpenAI

                self._openai = OpenAI(
                    api_key=os.environ.get(self.api_key_env) or NO_KEY,
                    base_url=self.base_url,
                    timeout=self.timeout,
                    max_retries=0,
                )
            return self._openai

    def _redact(self, text: str) -> str:
        """Remove the key (and masked forms of any key) from a server's message."""
        key = os.environ.get(self.api_key_env)
        if key:
            text = text.replace(key, "[redacted]")
        return _MASKED.sub("[redacted]", text)[:300]

    def _delay(self, retry: int, headers: Any) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        hinted = _retry_after(headers)
        if hinted is not None:
            return min(hinted, self.max_backoff)
        return min(self.backoff * 2**retry, self.max_backoff) * random.uniform(0.5, 1.0)

    def _request(self, sample_id: str, body: dict[str, Any]) -> _Reply:
        """Send one chat completion, retrying transient failures."""
        import openai

        extra = body.pop("extra_body", None)
        for attempt in range(1, self.max_retries + 2):
            t0 = time.perf_counter()
            headers = None
            try:
                response = self._client().chat.completions.create(**body, extra_body=extra)
                return _reply(response, time.perf_counter() - t0)
            except (
                openai.APIResponseValidationError,
                ValueError,
                TypeError,
                AttributeError,
                IndexError,
            ) as err:
                # A 200 whose body is not a chat completion (not JSON, no choices): a proxy or an
                # overloaded server; retried like a 5xx, then a failed cell naming the sample.
                status, retry = None, True
                why = f"malformed response ({type(err).__name__}: {self._redact(str(err))})"
            except openai.APIStatusError as err:
                status, headers = err.status_code, err.response.headers
                retry = status in _RETRY_STATUSES or status >= 500
                why = f"HTTP {status}: {self._redact(_server_message(err))}"
            except openai.APITimeoutError:
                status, retry, why = None, True, f"no HTTP status (timed out after {self.timeout:g}s)"
            except openai.APIConnectionError as err:
                status, retry = None, True
                why = f"no HTTP status (connection error: {self._redact(str(err.__cause__ or err))})"
            if not retry or attempt > self.max_retries:
                break  # raised outside the handler, so the client's exception is not chained
            delay = self._delay(attempt - 1, headers)
            log.warning(
                "sample %r: %s; retry %d/%d in %.2fs", sample_id, why, attempt, self.max_retries, delay
            )
            time.sleep(delay)
        raise APIRequestError(
            f"sample {sample_id!r}: chat completion at {self.base_url} failed after {attempt} "
            f"attempt(s): {why}",
            sample_id=sample_id,
            status=status,
            attempts=attempt,
        )

    def _map(self, fn, items: list) -> list:
        """``fn`` over ``items`` on the bounded pool, in order; the first failure cancels the rest."""
        if len(items) <= 1 or self.max_concurrency == 1:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(max_workers=min(self.max_concurrency, len(items))) as pool:
            futures = [pool.submit(fn, x) for x in items]
            try:
                return [f.result() for f in futures]
            except BaseException:
                for f in futures:
                    f.cancel()
                raise

    # -- requests --------------------------------------------------------------------------

    def _image_url(self, prompt: Prompt) -> str:
        """The prompt's image as a data URI (cached: variants of one sample share the image)."""
        with self._images_lock:
            cached = self._images.get(prompt.image)
        if cached is None:
            from cotprobe.backends.base import load_image

            buffer = io.BytesIO()
            load_image(prompt).save(buffer, format=self.image_format)
            mime = "image/png" if self.image_format == "PNG" else "image/jpeg"
            cached = f"data:{mime};base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"
            with self._images_lock:
                self._images[prompt.image] = cached
        return cached

    def _body(self, prompt: Prompt, assistant: str, *, fallback: bool) -> dict[str, Any]:
        """Messages (plus vLLM's continuation switches) for a user turn and assistant text."""
        user_text = prompt.user_text
        if fallback and assistant:
            user_text += FALLBACK_INSTRUCTION.format(prefill=assistant)
        messages: list[dict[str, Any]] = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": self._image_url(prompt)}},
                    {"type": "text", "text": user_text},
                ],
            }
        ]
        body: dict[str, Any] = {"model": self.path, "messages": messages}
        if assistant and not fallback:
            messages.append({"role": "assistant", "content": assistant})
            body["extra_body"] = {"continue_final_message": True, "add_generation_prompt": False}
        return self._with_template_kwargs(body)

    def _with_template_kwargs(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.chat_template_kwargs:
            body["extra_body"] = {
                **body.get("extra_body", {}),
                "chat_template_kwargs": self.chat_template_kwargs,
            }
        return body

    def _sampling_fields(self, s: dict[str, Any], seed: int) -> dict[str, Any]:
        """The request's sampling fields; a reasoning model gets only those it accepts."""
        if self.reasoning:
            out = {"max_completion_tokens": s["max_new_tokens"], "seed": seed}
            if self.reasoning_effort is not None:
                out["reasoning_effort"] = self.reasoning_effort
            return out
        return {
            "temperature": s["temperature"],
            "top_p": s["top_p"],
            "max_tokens": s["max_new_tokens"],
            "seed": seed,
        }

    def _cost(self, prompt_tokens: int, completion_tokens: int) -> float | None:
        price_in, price_out = self.prices
        if price_in is None or price_out is None:
            return None
        return (prompt_tokens * float(price_in) + completion_tokens * float(price_out)) / 1000.0

    # -- the interface ---------------------------------------------------------------------

    def generate(
        self, prompts: list[Prompt], *, model_id: str, seed: int, sampling: dict[str, Any]
    ) -> list[Generation]:
        """Answer each prompt; see ``Backend.generate``.

        Prompts go out ``batch_size`` at a time (at most ``max_concurrency`` in flight), so a
        failure loses only the batch in flight; the CLI calls this once per batch and keeps
        what it wrote before. Prompt ``i`` is sent with ``seed + i``. Temperature, top_p,
        max_tokens and seed are always sent, so no server-side default applies (a reasoning model:
        max_completion_tokens, seed and reasoning_effort).
        """
        s = check_sampling(sampling)
        fallback = self.prefill_mode == "fallback"

        def one(item: tuple[int, Prompt]) -> Generation:
            i, prompt = item
            body = self._body(prompt, prompt.prefill, fallback=fallback)
            body.update(self._sampling_fields(s, seed + i))
            reply = self._request(prompt.id, body)
            return self._record(prompt, reply, model_id, fallback)

        out: list[Generation] = []
        items = list(enumerate(prompts))
        for start in range(0, len(items), s["batch_size"]):
            out.extend(self._map(one, items[start : start + s["batch_size"]]))
        return out

    def complete_texts(self, texts: list[str], *, seed: int, sampling: dict[str, Any]) -> list[Completion]:
        """Text-only chat replies (see ``cotprobe.backends.base.complete``); text ``i`` uses ``seed + i``."""

        def one(item: tuple[int, str]) -> Completion:
            i, text = item
            body = self._with_template_kwargs(
                {
                    "model": self.path,
                    "messages": [{"role": "user", "content": text}],
                    **self._sampling_fields(sampling, seed + i),
                }
            )
            reply = self._request(f"text {i}", body)
            finish = "length" if reply.finish_reason == "length" else "stop"
            return Completion(reply.content, reply.prompt_tokens, reply.completion_tokens, finish)

        out: list[Completion] = []
        items = list(enumerate(texts))
        for start in range(0, len(items), sampling["batch_size"]):
            out.extend(self._map(one, items[start : start + sampling["batch_size"]]))
        return out

    def _record(self, prompt: Prompt, reply: _Reply, model_id: str, fallback: bool) -> Generation:
        prefill, content = prompt.prefill, reply.content
        if not fallback or not prefill:
            delivery, completion, text = DELIVERY_PREFILL, content, prefill + content
        elif content.startswith(prefill):
            delivery, completion, text = DELIVERY_FALLBACK, content[len(prefill) :], content
        else:
            delivery, completion, text = DELIVERY_IGNORED, content, content
        return make_generation(
            prompt,
            model_id=model_id,
            completion=completion,
            text=text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            seconds=reply.seconds,
            finish_reason="length" if reply.finish_reason == "length" else "stop",
            delivery=delivery,
            cost_usd=self._cost(reply.prompt_tokens, reply.completion_tokens),
        )

    def letter_scores(self, prompts: list[Prompt], generations: list[Generation]) -> list[LetterScores]:
        """Letter distribution after ``<answer>``, from ``top_logprobs``; see ``Backend.letter_scores``.

        One greedy request per prompt continues prompt + pre-fill + the generation up to its first
        ``<answer>`` (appended when missing) with ``max_tokens=1``; the letters' log-probabilities
        among the returned alternatives are renormalised over the letters (a letter not listed
        gets probability 0). A token counts as a letter when it equals it, else when it equals
        it after stripping whitespace (the best such token). Without any letter, without
        log-probabilities, or in ``fallback`` mode, the row is an explicit missing value.
        """
        check_pairs(prompts, generations)
        off = None
        if self.prefill_mode == "fallback":
            off = "prefill_mode is fallback: the API cannot continue the assistant turn at <answer>"
        elif self.top_logprobs == 0:
            off = "top_logprobs is 0 (letter scoring turned off)"
        if off is not None:
            return [
                _missing(p, scoring_point(p, g).answer_position, off) for p, g in zip(prompts, generations)
            ]

        def one(pair: tuple[Prompt, Generation]) -> LetterScores:
            prompt, generation = pair
            point = scoring_point(prompt, generation)
            body = self._body(prompt, point.assistant_text, fallback=False)
            body.update(
                temperature=0.0,
                top_p=1.0,
                max_tokens=1,
                seed=0,
                logprobs=True,
                top_logprobs=self.top_logprobs,
            )
            reply = self._request(prompt.id, body)
            letters = list(prompt.options)
            if not reply.top_logprobs:
                return _missing(prompt, point.answer_position, "the API returned no log-probabilities")
            values = _letter_logprobs(letters, reply.top_logprobs)
            if all(v == -math.inf for v in values):
                reason = f"no option letter among the top {self.top_logprobs} log-probabilities"
                return _missing(prompt, point.answer_position, reason)
            fields = letter_distribution(letters, values, prompt.answer, prompt.target_letter)
            return LetterScores(id=prompt.id, answer_position=point.answer_position, **fields)

        return self._map(one, list(zip(prompts, generations)))


def _missing(prompt: Prompt, answer_position: str, reason: str) -> LetterScores:
    """A LetterScores row that says why there is no distribution."""
    return LetterScores(
        id=prompt.id,
        letters=list(prompt.options),
        probs=[],
        entropy=math.nan,
        p_correct=math.nan,
        p_target=None,
        argmax_letter="",
        answer_position=answer_position,
        missing_reason=reason,
    )


def _letter_logprobs(letters: list[str], top: list[tuple[str, float]]) -> list[float]:
    """Each letter's log-probability among the alternatives (-inf when absent)."""
    exact = {tok: lp for tok, lp in top}
    values = []
    for letter in letters:
        if letter in exact:
            values.append(float(exact[letter]))
            continue
        loose = [lp for tok, lp in top if tok.strip() == letter]
        values.append(float(max(loose)) if loose else -math.inf)
    return values


def _reply(response: Any, seconds: float) -> _Reply:
    """Read a ChatCompletion into a _Reply (tolerating servers that omit usage or logprobs)."""
    if isinstance(response, str | bytes) or not getattr(response, "choices", None):
        raise ValueError("the body holds no choices")
    choice = response.choices[0]
    usage = getattr(response, "usage", None)
    top = None
    logprobs = getattr(choice, "logprobs", None)
    content = getattr(logprobs, "content", None) if logprobs is not None else None
    if content:
        alternatives = getattr(content[0], "top_logprobs", None) or []
        top = [(a.token, float(a.logprob)) for a in alternatives] or None
    return _Reply(
        content=choice.message.content or "",
        finish_reason=choice.finish_reason or "stop",
        prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
        top_logprobs=top,
        seconds=seconds,
    )


def _server_message(err: Any) -> str:
    """The error message a server sent (OpenAI's ``{"error": {"message": ...}}``), or ""."""
    body = getattr(err, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            return str(inner.get("message", ""))
        return str(inner)
    return "" if body is None else str(body)


def _retry_after(headers: Any) -> float | None:
    """Seconds asked for by ``retry-after-ms`` or ``Retry-After`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(float(ms) / 1000.0, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)
