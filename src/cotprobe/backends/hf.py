"""The transformers backend: batched ``generate`` and letter scoring for Qwen2.5-VL-style VLMs.

Loads with ``AutoProcessor`` + ``AutoModelForImageTextToText``, so a hub checkpoint (Qwen2.5-VL-7B)
and the project's tiny model (``cotprobe.tiny_model``) go through the same code.

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
from cotprobe.records import Generation, LetterScores, Prompt


class HFBackend(LocalLetterScoring, Backend):
    """Hugging Face transformers backend.

    Args:
        path: A local checkpoint directory or a hub id.
        dtype: ``auto`` (bfloat16 on CUDA, float32 on CPU), ``float32``, ``bfloat16`` or ``float16``.
        device: ``auto`` (``cuda`` when available, else ``cpu``) or a torch device string.
        score_batch_size: Batch size of the letter-scoring forward passes.
        attn_implementation: Passed to ``from_pretrained`` when set (e.g. ``sdpa``, ``eager``).
    """

    version = 1
    loads_weights = True

    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        device: str = "auto",
        score_batch_size: int = 16,
        attn_implementation: str | None = None,
    ):
        super().__init__(
            path,
            dtype=dtype,
            device=device,
            score_batch_size=score_batch_size,
            attn_implementation=attn_implementation,
        )
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor, GenerationConfig

        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if dtype == "auto":
            dtype = "bfloat16" if str(device).startswith("cuda") else "float32"
        if dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be auto, float32, bfloat16 or float16, got {dtype!r}")
        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        self.score_batch_size = int(score_batch_size)

        self.processor = AutoProcessor.from_pretrained(self.path)
        # A text-only checkpoint (an LLM judge such as Qwen3-32B) has a tokenizer, no processor.
        self.tokenizer = getattr(self.processor, "tokenizer", self.processor)
        # Decoder-only batching: pad on the left so every row's next token sits at position -1.
        self.tokenizer.padding_side = "left"
        extra = {"attn_implementation": attn_implementation} if attn_implementation else {}
        try:
            model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=self.dtype, **extra)
        except ValueError as err:
            if "Unrecognized configuration class" not in str(err):
                raise
            from transformers import AutoModelForCausalLM

            # Text-only model: serves complete_texts (judges); generate() would fail on the image.
            model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype, **extra)
        self.model = model.to(self.device).eval()

        self.eos_ids = end_of_turn_ids(self.tokenizer, self.path)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.eos_ids[0] if pad is None else pad
        # Checkpoints ship sampling defaults (Qwen2.5-VL: top_k=1, repetition_penalty=1.05, ...) that
        # generate() silently merges into every call; drop them so only our explicit settings apply.
        self.model.generation_config = GenerationConfig(pad_token_id=self.pad_id, eos_token_id=self.eos_ids)

    # -- shared plumbing -------------------------------------------------------------------

    def _encode(self, prompts: list[Prompt], assistants: list[str]):
        """Render and tokenise a batch: chat template, image, assistant text continued."""
        images = [load_image(p) for p in prompts]
        texts = []
        for prompt, image, assistant in zip(prompts, images, assistants):
            messages = build_messages(prompt, image, assistant)
            texts.append(
                self.processor.apply_chat_template(
                    messages,
                    tokenize=False,
                    add_generation_prompt=not assistant,
                    continue_final_message=bool(assistant),
                )
            )
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
                ids = self.model.generate(**enc, generation_config=config)
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
            rendered = [
                self.processor.apply_chat_template(
                    [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
                )
                for text in texts[start : start + bs]
            ]
            enc = self.tokenizer(rendered, padding=True, add_special_tokens=False, return_tensors="pt")
            enc = enc.to(self.device)
            if config.do_sample:
                torch.manual_seed(seed + b)
            with torch.inference_mode():
                ids = self.model.generate(**enc, generation_config=config)
            new = ids[:, enc["input_ids"].shape[1] :].tolist()
            for row, n_prompt in zip(new, enc["attention_mask"].sum(dim=1).tolist()):
                stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
                kept = row if stop is None else row[: stop + 1]
                text = self.tokenizer.decode(
                    kept, skip_special_tokens=True, clean_up_tokenization_spaces=False
                )
                out.append(Completion(text, int(n_prompt), len(kept), "length" if stop is None else "stop"))
        return out

    def _generation_config(self, s: dict[str, Any]):
        """Explicit decoding settings (checked sampling dict), so no checkpoint default applies."""
        from transformers import GenerationConfig

        common = {
            "max_new_tokens": s["max_new_tokens"],
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "no_repeat_ngram_size": 0,
            "pad_token_id": self.pad_id,
            "eos_token_id": self.eos_ids,
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
        stop = next((i for i, t in enumerate(row) if t in self.eos_ids), None)
        kept = row if stop is None else row[: stop + 1]
        completion = self.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        return make_generation(
            prompt,
            model_id=model_id,
            completion=completion,
            prompt_tokens=n_prompt,
            completion_tokens=len(kept),
            seconds=seconds,
            finish_reason="length" if stop is None else "stop",
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
