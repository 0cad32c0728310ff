"""The model server's memory of greedy answers: a repeated request is answered, not recomputed.

Many cells of a study ask a model the very same questions: a variant that does not depend on the
seed (``base``, ``stop_think``, the controls, ``abstain``) gives every seed the same image, user
turn, pre-fill and options. With greedy decoding (temperature 0) the answer depends on nothing
else, so the server answers a request it has seen from memory, with the asking prompts' ids,
variant and seed written into the records.

The unit is a whole request, never a single prompt: a batched backend's numbers depend on what
shares the batch (padding), so a hit returns exactly what the backend computed for the same batch
and a study's files are the same with or without the memo (``seconds`` aside: a
remembered record keeps the time its batch took). Sampled requests (temperature > 0) are
never remembered: each seed must draw its own answers.

Light module: no torch.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from cotprobe.records import Generation, LetterScores, Prompt

# Records kept (all requests together); the oldest request is forgotten first. A record is ~1 kB.
MAX_RECORDS = 100_000


class AnswerMemo:
    """Remembered ``generate`` and ``letter_scores`` answers of one model load.

    Args:
        max_records: Forget the least recently used requests beyond this many records.
    """

    def __init__(self, max_records: int = MAX_RECORDS):
        self.max_records = int(max_records)
        self._entries: OrderedDict[str, list] = OrderedDict()
        self._records = 0
        self._images: dict[tuple[str, int, int], str] = {}
        # Per route: prompts answered from memory, prompts computed (sampled requests not counted).
        self.counts = {"generate": {"hits": 0, "misses": 0}, "letter_scores": {"hits": 0, "misses": 0}}

    def _image(self, path: str) -> str:
        """A digest of the image file's bytes (cached by path, size and mtime)."""
        try:
            st = os.stat(path)
        except OSError:
            return f"unreadable:{path}"  # the backend reports the missing file itself
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._images:
            with open(path, "rb") as fh:
                self._images[key] = hashlib.sha256(fh.read()).hexdigest()
        return self._images[key]

    def _seen(self, p: Prompt) -> list[Any]:
        """What the model sees of a prompt (``build_messages``) and what its answer is parsed with."""
        return [self._image(p.image), p.user_text, p.prefill, sorted(p.options.items())]

    def _lookup(self, route: str, parts: list[Any], n: int, compute: Callable[[], list]) -> tuple[list, bool]:
        key = hashlib.sha256(json.dumps([route, parts], sort_keys=True).encode()).hexdigest()
        if key in self._entries:
            self._entries.move_to_end(key)
            self.counts[route]["hits"] += n
            return self._entries[key], True
        out = compute()
        self.counts[route]["misses"] += n
        self._entries[key] = out
        self._records += len(out)
        while self._records > self.max_records and len(self._entries) > 1:
            _, old = self._entries.popitem(last=False)
            self._records -= len(old)
        return out, False

    def generate(
        self,
        prompts: Sequence[Prompt],
        model_id: str,
        sampling: dict[str, Any],
        compute: Callable[[], list[Generation]],
    ) -> list[Generation]:
        """``compute()``'s generations for ``prompts``, or the remembered ones of an equal request."""
        if float(sampling.get("temperature", 1.0)) != 0.0:
            return compute()
        parts = [sorted(sampling.items()), [self._seen(p) for p in prompts]]
        out, hit = self._lookup("generate", parts, len(prompts), compute)
        if not hit:
            return out
        return [
            dataclasses.replace(g, id=p.id, model=model_id, bench=p.bench, variant=p.variant, seed=p.seed)
            for p, g in zip(prompts, out)
        ]

    def letter_scores(
        self,
        prompts: Sequence[Prompt],
        generations: Sequence[Generation],
        compute: Callable[[], list[LetterScores]],
    ) -> list[LetterScores]:
        """``compute()``'s letter scores, or the remembered ones of an equal request.

        Scores are a forward pass, the same for a greedy or a sampled generation: every request is
        remembered, keyed also by the letters that summarise the distribution (answer, target).
        """
        parts = [
            [*self._seen(p), p.answer, p.target_letter, g.prefill, g.completion]
            for p, g in zip(prompts, generations)
        ]
        out, hit = self._lookup("letter_scores", parts, len(prompts), compute)
        if not hit:
            return out
        return [dataclasses.replace(s, id=p.id) for p, s in zip(prompts, out)]
