"""What the model server and its clients agree on: a load's identity, the address file, the routes.

**Identity of a load** (``spec_key``): the model's load settings, absolute path and weights
fingerprint, so a rebuilt or retrained model never reuses an old load.

**The address file**: the server writes ``{"status": "loading", ...}`` to it at once, then
``{"url", "spec_key", "model", ...}`` once the model is loaded, or ``{"error": ...}`` when loading
fails, so waiting cells fail at once instead of timing out. Every version of the file names the
server's process (``pid``, ``host``, ``started``: its start time, so a reused pid is not taken for
it) and the Snakemake run whose cell started it (``run``, from ``$COTPROBE_RUN_ID``): a cell waits
for a server only while that process lives, and at most ``LOAD_TIMEOUT`` seconds (what a load
takes; the config's ``model_server.load_timeout``), and a run's end stops only the idle servers it
started.

**Routes** (JSON over HTTP on loopback, requests served one at a time under a lock, since a backend
holds one model and vLLM batches within a call):

* ``GET /health`` -> ``{"model": id, "spec_key": ..., "pid": ...}``
* ``GET /memo`` -> prompts answered from memory and computed, per route (``cotprobe.serving.memo``)
* ``POST /generate`` ``{"prompts": [...], "model_id", "seed", "sampling"}`` -> ``{"generations": [...]}``
* ``POST /letter_scores`` ``{"prompts": [...], "generations": [...]}`` -> ``{"scores": [...]}``
* ``POST /complete_texts`` ``{"texts": [...], "seed", "sampling"}`` -> ``{"completions": [...]}`` (judges)
  A greedy ``/generate`` or any ``/letter_scores`` request equal to an earlier one in what the model
  sees is answered from memory (``cotprobe.serving.memo``): the same records, with the asking ids.
* errors: ``{"error": message, "kind": "input" | "backend" | "value"}`` with status 400/500.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from cotprobe.backends.base import BackendError
from cotprobe.io import InputError

LOAD_TIMEOUT = 600.0  # seconds a cell waits for a server to load (the config's model_server.load_timeout)


def hash_weights(h, path: str, revision: str | None = None) -> None:
    """Feed a local checkpoint's weight/config files (name, size, mtime) into hash ``h``.

    The same path may hold other weights later (a rebuilt or retrained model). A hub id feeds the
    commit its ``revision`` resolves to in the local hub cache (``hub_commit``), when it does.
    """
    from cotprobe.backends.settings import hub_commit

    commit = hub_commit(path, revision)
    if commit:
        h.update(f"commit:{commit}".encode())
    weights = Path(path)
    if path and weights.is_dir():
        for f in sorted(weights.glob("*.safetensors")) + sorted(weights.glob("*.json")):
            st = f.stat()
            h.update(f"{f.name}:{st.st_size}:{st.st_mtime_ns}".encode())


def spec_key(spec: dict[str, Any]) -> str:
    """Identity of a model load: backend, settings, version, absolute path and weights fingerprint.

    The DAG's ``commit`` is left out (``hash_weights`` reads the same commit), so a judge's spec,
    which has none, shares the load of a hub model's generation cells.
    """
    # sampling is per request
    load = {k: v for k, v in spec.items() if k not in ("generation", "commit")}
    path = str(spec.get("path", ""))
    if path and Path(path).exists():
        load["path"] = str(Path(path).resolve())
    h = hashlib.sha256(json.dumps(load, sort_keys=True).encode())
    hash_weights(h, path, (spec.get("settings") or {}).get("revision"))
    return h.hexdigest()[:16]


def error_kind(err: Exception) -> str:
    """The ``kind`` of an error answer: the client raises InputError for ``input``, else BackendError."""
    if isinstance(err, InputError):
        return "input"
    if isinstance(err, BackendError):
        return "backend"
    return "value"


def start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def this_process() -> dict[str, Any]:
    """What a server's file records to name its process (see ``gone``) and the run that started it."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": start_time(pid),
            "run": os.environ.get("COTPROBE_RUN_ID")}  # fmt: skip


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    try:  # a zombie (exited, not yet reaped by its parent) is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def read_info(url_file: Path) -> dict[str, Any] | None:
    """The address file's content, or None while it is absent or half-written."""
    try:
        return json.loads(url_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def gone(info: dict[str, Any]) -> bool:
    """True when the server process an address file names is known to have ended: its pid is not
    running on this host, or runs another process (started at another time). A file written on
    another host (a shared filesystem) is never known gone here."""
    if "pid" not in info or info.get("host", socket.gethostname()) != socket.gethostname():
        return False
    pid = int(info["pid"])
    if not pid_alive(pid):
        return True
    started = info.get("started")
    return started is not None and start_time(pid) not in (None, started)


def live_pid(info: dict[str, Any] | None) -> int | None:
    """The pid of the server an address file names, if that server is running (loading or serving)."""
    if info is None or "error" in info or "pid" not in info or gone(info):
        return None
    return int(info["pid"])
