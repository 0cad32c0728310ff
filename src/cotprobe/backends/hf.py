"""The transformers backend: batched ``generate`` and letter scoring for Qwen2.5-VL-style VLMs.

Loads with ``AutoProcessor`` + ``AutoModelForImageTextToText``, so a hub checkpoint (Qwen2.5-VL-7B)
and the project's tiny model (``cotprobe.models.tiny``) go through the same code.

Light at import: torch and transformers are imported inside the methods.
"""

from __future__ import annotations

import time
from typing import Any

from cotprobe.backends.base import (
    Backend,
    Completion,
    LocalLetterScoring,
    build_messages,
    check_pairs,
    check_sampling,
    end_of_turn_ids,
    letter_distribution,
    load_image,
    make_generation,
    scoring_point,
)
from cotprobe.backends.settings import check_model_settings, finish_row
from cotprobe.records import Generation, LetterScores, Prompt


class HFBackend(LocalLetterScoring, Backend):
    """Hugging Face transformers backend.

    Args:
        path: A local checkpoint directory or a hub id.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto`` (``cuda`` when available, else ``cpu``) or a torch device string.
        score_batch_size: Batch size of the letter-scoring forward passes.
        attn_implementation: Passed to ``from_pretrained`` when set (e.g. ``sdpa``, ``eager``).
        revision: Branch, tag or commit of a hub id (``from_pretrained(revision=...)`` for the
            processor and the model); an error for a local directory, which has no revisions.
        trust_remote_code: Run the checkpoint's own modelling code (off unless set).
        device_map: accelerate's placement (``auto``, ``balanced``, ``sequential``, a device or a
            module -> device mapping), e.g. a 72B over the job's GPUs; the model is then not moved
            with ``device`` (set one of the two).
        processor_kwargs: ``AutoProcessor.from_pretrained`` overrides, e.g. ``{min_pixels: 3136,
            max_pixels: 1003520}`` for Qwen2.5-VL (vLLM's ``mm_processor_kwargs``); a name the
            image or video processor does not take is an error.
        chat_template_kwargs: Extra chat-template variables, e.g. ``{enable_thinking: false}`` for
            Qwen3, in every rendered chat (generation, letter scoring, text-only replies).
        system_prompt: A system turn before every user turn.
        use_model_generation_config: Keep the checkpoint's ``generation_config.json`` (e.g.
            ``top_k``, ``repetition_penalty``) under the explicit sampling settings; off, only the
            explicit settings apply.
        stop: Strings that end a reply (kept in its text), besides the end-of-turn tokens.
    """

    version = 2  # 2: image/video marker tokens are never generated (input_only_token_ids)
    env = "eval"
    loads_weights = True

    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        score_batch_size: int = 16,
        attn_implementation: str | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        device_map: str | dict[str, Any] | None = None,
        processor_kwargs: dict[str, Any] | None = None,
        chat_template_kwargs: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        use_model_generation_config: bool = False,
        stop: str | list[str] | None = None,
    ):
        shared = check_model_settings(
            str(path),
            revision=revision,
            trust_remote_code=trust_remote_code,
            processor_kwargs=processor_kwargs,
            chat_template_kwargs=chat_template_kwargs,
            system_prompt=system_prompt,
            use_model_generation_config=use_model_generation_config,
            stop=stop,
        )
        super().__init__(
            path,
            dtype=dtype,
            device=device,
            score_batch_size=score_batch_size,
            attn_implementation=attn_implementation,
            device_map=device_map,
            **shared._asdict(),
        )
        self.shared = shared
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

        if device_map is not None:
            if device != "auto":
                raise ValueError(f"settings 'device' ({device!r}) and 'device_map': set one, not both")
            if not isinstance(device_map, (str, dict)) or not device_map:
                raise ValueError(
                    f"setting 'device_map': need a strategy, a device or a mapping, got {device_map!r}"
                )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.score_batch_size = int(score_batch_size)

        hub = {"revision": shared.revision, "trust_remote_code": shared.trust_remote_code}
        load = _size_form(shared.processor_kwargs, lambda: _saved_size(self.path, hub))
        self.processor = AutoProcessor.from_pretrained(self.path, **hub, **load)
        _check_processor_kwargs(self.processor, shared.processor_kwargs)
        # A text-only checkpoint (an LLM judge such as Qwen3-32B) has a tokenizer, no processor.
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Decoder-only batching: pad on the left so every row's next token sits at position -1.
        self.tokenizer.padding_side = "left"
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        if device_map is not None:
            extra["device_map"] = device_map
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=self.dtype, **hub, **extra)
        except ValueError as err:
            if "Unrecognized configuration class" not in str(err):
                raise
            from transformers import AutoModelForCausalLM

            # Text-only model: serves complete_texts (judges); generate() would fail on the image.
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype, **hub, **extra)
        if device_map is None:
            model = model.to(self.device)
        else:  # placed by accelerate; inputs go where the embeddings are
            self.device = model.device
        self.model = model.eval()

        self.eos_ids = end_of_turn_ids(self.tokenizer, self.path)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.eos_ids[0] if pad is None else pad
        # Checkpoints ship sampling defaults (Qwen2.5-VL: top_k=1, repetition_penalty=1.05, ...) that
        # generate() silently merges into every call; drop them so only our explicit settings apply,
        # unless use_model_generation_config keeps them (under the explicit ones, _generation_config).
        self.checkpoint_generation_config = self.model.generation_config
        self.model.generation_config = GenerationConfig(pad_token_id=self.pad_id, eos_token_id=self.eos_ids)
        self.suppress = input_only_token_ids(self.model.config)

    def _chat_text(self, messages: list[dict[str, Any]], continued: bool) -> str:
        """Render a chat with the model's template (and the ``chat_template_kwargs`` setting)."""
        return self.processor.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=not continued,
            continue_final_message=continued,
            **self.shared.chat_template_kwargs,
        )

    # -- shared plumbing -------------------------------------------------------------------

    def _encode(self, prompts: list[Prompt], assistants: list[str]):
        """Render and tokenise a batch: chat template, image, assistant text continued."""
        images = [load_image(p) for p in prompts]
        texts = []
        for prompt, image, assistant in zip(prompts, images, assistants):
            messages = build_messages(prompt, image, assistant, system=self.shared.system_prompt)
            texts.append(self._chat_text(messages, bool(assistant)))
        enc = self.processor(text=texts, images=images, padding=True, return_tensors="pt")
        return texts, enc.to(self.device)

    # -- the interface ---------------------------------------------------------------------

    def generate(
        self, prompts: list[Prompt], *, model_id: str, seed: int, sampling: dict[str, Any]
    ) -> list[Generation]:
        """Answer each prompt; see ``Backend.generate``.

        Sampling is seeded per batch (``seed + batch index``), so a rerun with the same prompts,
        seed and batch size reproduces the outputs.
        """
        import torch

        s = check_sampling(sampling)
        config = self._generation_config(s)
        out: list[Generation] = []
        bs = s["batch_size"]
        for b, start in enumerate(range(0, len(prompts), bs)):
            batch = prompts[start : start + bs]
            t0 = time.perf_counter()
            _, enc = self._encode(batch, [p.prefill for p in batch])
            if config.do_sample:
                torch.manual_seed(seed + b)
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=config, tokenizer=self.tokenizer)
            new = ids[:, enc["input_ids"].shape[1] :].tolist()
            prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
            seconds = (time.perf_counter() - t0) / len(batch)
            for prompt, row, n_prompt in zip(batch, new, prompt_tokens):
                out.append(self._record(prompt, row, int(n_prompt), seconds, model_id))
        return out

    def complete_texts(self, texts: list[str], *, seed: int, sampling: dict[str, Any]) -> list[Completion]:
        """Text-only chat replies (see ``cotprobe.backends.base.complete``); seeded like ``generate``."""
        import torch

        config = self._generation_config(sampling)
        out: list[Completion] = []
        bs = sampling["batch_size"]
        for b, start in enumerate(range(0, len(texts), bs)):
            system = self.shared.system_prompt
            head = [{"role": "system", "content": system}] if system else []
            rendered = [
                self._chat_text([*head, {"role": "user", "content": text}], continued=False)
                for text in texts[start : start + bs]
            ]
            enc = self.tokenizer(rendered, padding=True, add_special_tokens=False, return_tensors="pt")
            enc = enc.to(self.device)
            if config.do_sample:
                torch.manual_seed(seed + b)
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=config, tokenizer=self.tokenizer)
            new = ids[:, enc["input_ids"].shape[1] :].tolist()
            for row, n_prompt in zip(new, enc["attention_mask"].sum(dim=1).tolist()):
                done = self._finish(row)
                out.append(Completion(done.completion, int(n_prompt), done.tokens, done.finish_reason))
        return out

    def _finish(self, row: list[int]):
        """Cut a generated row at its end-of-turn token or stop string (``finish_row``)."""
        decode = lambda ids: self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return finish_row(row, self.eos_ids, self.shared.stop, decode)

    def _generation_config(self, s: dict[str, Any]):
        """Explicit decoding settings (checked sampling dict), so no checkpoint default applies.

        With ``use_model_generation_config`` the checkpoint's own generation config is the base and
        only the sampling settings (length, temperature, top_p), the end-of-turn ids and the stop
        strings are set over it.
        """
        import copy

        from transformers import GenerationConfig

        stop = {"stop_strings": self.shared.stop} if self.shared.stop else {}
        ends = {"pad_token_id": self.pad_id, "eos_token_id": self.eos_ids, **stop}
        if self.suppress:
            ends["suppress_tokens"] = self.suppress
        if self.shared.use_model_generation_config:
            config = copy.deepcopy(self.checkpoint_generation_config)
            greedy = s["temperature"] == 0
            sampled = {} if greedy else {"temperature": s["temperature"], "top_p": s["top_p"]}
            config.update(max_new_tokens=s["max_new_tokens"], do_sample=not greedy, **sampled, **ends)
            return config
        common = {
            "max_new_tokens": s["max_new_tokens"],
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            **ends,
        }
        if s["temperature"] == 0:
            return GenerationConfig(do_sample=False, **common)
        # top_k=0 turns off transformers' global top_k=50 default; top_p alone shapes the tail.
        return GenerationConfig(
            do_sample=True,
            temperature=s["temperature"],
            top_p=s["top_p"],
            top_k=0,
            typical_p=1.0,
            **common,
        )

    def _record(self, prompt: Prompt, row: list[int], n_prompt: int, seconds: float, model_id: str):
        """Turn one row of generated ids into a Generation."""
        done = self._finish(row)
        return make_generation(
            prompt,
            model_id=model_id,
            completion=done.completion,
            prompt_tokens=n_prompt,
            completion_tokens=done.tokens,
            seconds=seconds,
            finish_reason=done.finish_reason,
        )

    def letter_scores(self, prompts: list[Prompt], generations: list[Generation]) -> list[LetterScores]:
        """Score the option letters after ``<answer>``; see ``Backend.letter_scores``.

        One forward pass per batch over prompt + pre-fill + the generation up to its first
        ``<answer>`` (appended when missing), reading the logits at the last position.
        """
        import torch

        check_pairs(prompts, generations)
        out: list[LetterScores] = []
        for start in range(0, len(prompts), self.score_batch_size):
            batch = prompts[start : start + self.score_batch_size]
            points = [scoring_point(p, g) for p, g in zip(batch, generations[start : start + len(batch)])]
            tokens = [self._letters(list(p.options)) for p in batch]
            # Drop the part of <answer> that the tokenizer merges into the letter token (if any).
            contexts = [
                pt.assistant_text[: len(pt.assistant_text) - len(lt.carry)] for pt, lt in zip(points, tokens)
            ]
            texts, enc = self._encode(batch, contexts)
            for prompt, text, lt in zip(batch, texts, tokens):
                self._check_boundary(prompt, text, lt)
            with torch.inference_mode():
                logits = self.model(**enc, logits_to_keep=1).logits[:, -1, :].float().cpu()
            for i, (prompt, point, lt) in enumerate(zip(batch, points, tokens)):
                letters = list(prompt.options)
                values = logits[i, [lt.ids[x] for x in letters]].tolist()
                fields = letter_distribution(letters, values, prompt.answer, prompt.target_letter)
                out.append(LetterScores(id=prompt.id, answer_position=point.answer_position, **fields))
        return out


# Config fields naming the tokens that only mark image/video input in the prompt.
_INPUT_ONLY = ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


def input_only_token_ids(config) -> list[int]:
    """Ids of the tokens that only mark image or video input (Qwen2.5-VL: ``<|image_pad|>``,
    ``<|video_pad|>``, ``<|vision_start|>``, ``<|vision_end|>``), from the model's config.

    Generation suppresses them: a reply that contains one breaks every later forward pass over
    the prompt and the reply (letter scoring, a GRPO update), because the model counts it as one
    more image slot than the image has features (seen after ~400 GRPO steps on the organism).
    """
    ids: set[int] = set()
    for cfg in (config, getattr(config, "text_config", None)):
        for name in _INPUT_ONLY:
            value = getattr(cfg, name, None)
            if isinstance(value, int) and value >= 0:
                ids.add(value)
    return sorted(ids)


# The config's image-size names (vLLM's mm_processor_kwargs) and the ``size`` keys transformers takes.
_PIXEL_KEYS = {"min_pixels": "shortest_edge", "max_pixels": "longest_edge"}


def _size_form(kwargs: dict[str, Any], saved_size) -> dict[str, Any]:
    """``kwargs`` with ``min_pixels``/``max_pixels`` folded into ``size``, the form transformers wants.

    ``from_pretrained`` keeps its keyword arguments as call defaults, and a processor call given
    ``min_pixels``/``max_pixels`` warns (FutureWarning) at every batch. The same bounds as a ``size``
    complete with both edges (the checkpoint's own, ``saved_size()``, then the config's ``size``,
    then the config's pixel bounds) give the same pixels, without the warning.
    """
    if not _PIXEL_KEYS.keys() & kwargs.keys():
        return kwargs
    size = {**saved_size(), **(kwargs.get("size") or {})}
    size.update({edge: kwargs[key] for key, edge in _PIXEL_KEYS.items() if key in kwargs})
    rest = {k: v for k, v in kwargs.items() if k not in _PIXEL_KEYS and k != "size"}
    return {**rest, "size": size}


def _saved_size(path: str, hub: dict[str, Any]) -> dict[str, int]:
    """The checkpoint's image processor ``size`` edges (read from its config, no tokenizer load)."""
    from transformers import AutoImageProcessor

    size = AutoImageProcessor.from_pretrained(path, **hub).size
    return {edge: size[edge] for edge in _PIXEL_KEYS.values() if size.get(edge) is not None}


def _check_processor_kwargs(processor, kwargs: dict[str, Any]) -> None:
    """Raise ValueError for a ``processor_kwargs`` name no sub-processor takes (``from_pretrained``
    drops unknown names silently, so a typo would leave the images at their default size)."""
    import typing

    known: set[str] = set()
    for part in ("image_processor", "video_processor"):
        valid = getattr(getattr(processor, part, None), "valid_kwargs", None)
        if valid is not None:
            known |= set(typing.get_type_hints(valid))
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ValueError(
            f"setting 'processor_kwargs': {type(processor).__name__} does not take {unknown} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
