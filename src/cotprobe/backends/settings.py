"""Model settings that the ``hf`` and ``vllm`` backends share: their checks, stop strings, the hub commit.

A Hugging Face or vLLM user expects these under these names (``revision``, ``trust_remote_code``,
``processor_kwargs``, ``chat_template_kwargs``, ``system_prompt``, ``use_model_generation_config``,
``stop``); each backend maps them onto its library (see ``HFBackend`` and ``VLLMBackend``).

Light module: no torch, no transformers (``huggingface_hub`` only inside ``hub_commit``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

SHARED_SETTINGS = ("revision", "trust_remote_code", "processor_kwargs", "chat_template_kwargs",
                   "system_prompt", "use_model_generation_config", "stop")  # fmt: skip
# Arguments of apply_chat_template / LLM.chat that the backends set themselves.
RESERVED_TEMPLATE_KWARGS = frozenset(
    {"conversation", "messages", "tokenize", "add_generation_prompt", "continue_final_message",
     "chat_template", "return_dict", "return_tensors", "tools", "documents"}
)  # fmt: skip
_COMMIT = re.compile(r"[0-9a-f]{40}")


class ModelSettings(NamedTuple):
    """The shared settings, checked (see ``check_model_settings``)."""

    revision: str | None
    trust_remote_code: bool
    processor_kwargs: dict[str, Any]
    chat_template_kwargs: dict[str, Any]
    system_prompt: str | None
    use_model_generation_config: bool
    stop: list[str]


def _mapping(name: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValueError(f"setting {name!r}: need a mapping of names to values, got {value!r}")
    return dict(value)


def _flag(name: str, value: Any) -> bool:
    # bool("false") is True: a quoted YAML value must not switch remote code on.
    if not isinstance(value, bool):
        # ValueError like every bad setting: the DAG build reports them all as config errors.
        raise ValueError(f"setting {name!r}: need true or false, got {value!r}")  # noqa: TRY004
    return value


def check_model_settings(
    path: str,
    *,
    revision: Any = None,
    trust_remote_code: Any = False,
    processor_kwargs: Any = None,
    chat_template_kwargs: Any = None,
    system_prompt: Any = None,
    use_model_generation_config: Any = False,
    stop: Any = None,
) -> ModelSettings:
    """Check the shared settings of a model load; each error names its setting.

    Raises:
        ValueError: A value of the wrong type, a reserved template argument, an empty stop string,
            or a ``revision`` for a local directory (which has no revisions: transformers and vLLM
            would ignore it silently).
    """
    if revision is not None:
        if not isinstance(revision, str) or not revision.strip():
            raise ValueError(
                f"setting 'revision': need a branch, tag or commit of a hub id, got {revision!r}"
            )
        if Path(path).is_dir():
            raise ValueError(
                f"setting 'revision': {path} is a local directory, which has no revisions (transformers "
                "and vLLM ignore revision there); give a hub id as path, or drop revision"
            )
    template = _mapping("chat_template_kwargs", chat_template_kwargs)
    reserved = sorted(RESERVED_TEMPLATE_KWARGS & set(template))
    if reserved:
        raise ValueError(f"setting 'chat_template_kwargs': {reserved} are set by the backend itself")
    if system_prompt is not None and (not isinstance(system_prompt, str) or not system_prompt.strip()):
        raise ValueError(f"setting 'system_prompt': need non-empty text, got {system_prompt!r}")
    stops = [stop] if isinstance(stop, str) else list(stop) if isinstance(stop, (list, tuple)) else stop
    if stops is None:
        stops = []
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise ValueError(f"setting 'stop': need a non-empty string or a list of them, got {stop!r}")
    return ModelSettings(
        revision=revision,
        trust_remote_code=_flag("trust_remote_code", trust_remote_code),
        processor_kwargs=_mapping("processor_kwargs", processor_kwargs),
        chat_template_kwargs=template,
        system_prompt=system_prompt,
        use_model_generation_config=_flag("use_model_generation_config", use_model_generation_config),
        stop=stops,
    )


class Finished(NamedTuple):
    """A generated row cut where the record ends: its text, its token count and why it ended."""

    completion: str
    tokens: int
    finish_reason: str  # "stop" or "length"


def _stop_end(text: str, stop: Sequence[str]) -> int | None:
    """Where the first stop string to complete in ``text`` ends, or None."""
    ends = [at + len(s) for s in stop if (at := text.find(s)) >= 0]
    return min(ends) if ends else None


def finish_row(
    row: Sequence[int], eos_ids: Sequence[int], stop: Sequence[str], decode: Callable[[list[int]], str]
) -> Finished:
    """Cut one row of generated ids at its first end-of-turn token or stop string, whichever is first.

    The record keeps the end-of-turn token (in the count, invisible in the text) and the stop string
    (in the text; the token that completed it counts, and text decoded past the stop string is
    dropped), so hf and vllm write the same record for the same tokens.

    Args:
        row: Generated ids (may run on into padding after the end).
        eos_ids: End-of-turn token ids.
        stop: Stop strings.
        decode: Ids -> text (special tokens skipped).
    """
    row = list(row)
    at = next((i for i, t in enumerate(row) if t in eos_ids), None)
    kept = row if at is None else row[: at + 1]
    text = decode(kept)
    if stop and _stop_end(text, stop) is not None:
        for n in range(1, len(kept) + 1):  # the first token that completes a stop string
            end = _stop_end(decode(kept[:n]), stop)
            if end is not None:
                return Finished(decode(kept[:n])[:end], n, "stop")
    return Finished(text, len(kept), "length" if at is None else "stop")


def hub_commit(path: str, revision: str | None = None) -> str | None:
    """The commit ``revision`` of hub id ``path`` resolves to in this machine's hub cache, offline.

    Reads ``refs/<revision>`` of the cache's ``models--<org>--<name>`` folder (the layout
    ``huggingface_hub`` writes, under ``HF_HUB_CACHE``); a 40-hex revision is a commit already.
    Nothing is downloaded.

    Returns:
        The commit, or None for a local path, or for a hub id (or revision) not in the cache.
    """
    if not path or Path(path).exists():
        return None
    rev = revision or "main"
    if _COMMIT.fullmatch(rev):
        return rev
    from huggingface_hub import constants

    folder = Path(constants.HF_HUB_CACHE) / ("models--" + path.replace("/", "--"))
    ref = folder / "refs" / rev
    try:
        commit = ref.read_text().strip()
    except (OSError, ValueError):
        return None
    return commit if _COMMIT.fullmatch(commit) else None
