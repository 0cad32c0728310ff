"""Serving models to the stages: one load of a model answers every cell that needs it.

* ``open_backend``: how a stage gets a model (generation, early answering, LLM judges, the
  acknowledgment reader): a server started by hand, this host's shared server, or a load in this
  process.
* ``protocol``: a load's identity (``spec_key``), the address file and the HTTP routes.
* ``server``: ``cotprobe serve-model``, one backend load answering over loopback.
* ``client``: ``RemoteBackend`` (a backend whose model lives in a server) and ``connect``.
* ``leases``: shared servers in the workflow: spawn on first use, leases, idle exit, the load ledger.
* ``openai_server``: a small OpenAI-compatible chat server over the transformers backend
  (``python -m cotprobe.serving.openai_server``), for tests and small CPU runs of the ``openai`` backend.

Light at import: backends, torch and HTTP servers are imported when used.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cotprobe.serving.protocol import LOAD_TIMEOUT

if TYPE_CHECKING:
    from cotprobe.backends.base import Backend
    from cotprobe.serving.leases import Lease
    from cotprobe.specs import ModelParams

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Share:
    """How a cell shares a model load with the other cells of its host (``leases.attach``'s keywords).

    Args:
        root: Shared servers' addresses, leases, logs and load ledger.
        idle_timeout: A server this cell starts exits after this many seconds without cells.
        threads: Torch CPU threads of a server this cell starts (0: all CPUs).
        gpus: GPUs of the model: a server this cell starts first stops other models' idle servers.
        wait: Seconds to wait for the server to load the model.
    """

    root: str | Path = ".cotprobe/model_servers"
    idle_timeout: float = 300.0
    threads: int = 0
    gpus: int = 0
    wait: float = LOAD_TIMEOUT


def open_backend(
    model_id: str,
    params: ModelParams,
    share: Share | None = None,
    *,
    server_file: str | Path | None = None,
    server_wait: float = LOAD_TIMEOUT,
    threads: int | None = None,
) -> tuple[Backend, Lease | None]:
    """The backend of model ``params`` and the lease that keeps its server up (None when the model
    is not served by a shared server). A server knows the load by its param (``params.as_param()``).

    In order: the server a ``serve-model`` started by hand announces in ``server_file`` (waited for
    at most ``server_wait`` seconds); this host's
    shared server of the model, started first if none runs, when ``share`` is given and the backend
    loads weights; else a load in this process (``threads``, when given, is pinned again on torch,
    which the backend may have imported). Release the lease once the backend is closed.

    Raises:
        BackendError: A server failed to start or load, or serves another load.
    """
    from cotprobe.backends import BACKENDS

    t0 = time.perf_counter()
    if server_file:  # the model is loaded once, in a serve-model process started by hand
        from cotprobe.serving.client import connect

        backend = connect(server_file, params.as_param(), wait=server_wait)
        log.info("using model server %s (waited %.1fs)", backend.path, time.perf_counter() - t0)
        return backend, None
    cls = BACKENDS.get(params.backend)
    if share is not None and cls.loads_weights:
        from dataclasses import asdict

        from cotprobe.serving.leases import attach

        backend, lease = attach(model_id, params.as_param(), **asdict(share))
        log.info("using model server %s (waited %.1fs)", backend.path, time.perf_counter() - t0)
        return backend, lease
    backend = cls(path=params.path, **params.settings)
    if threads is not None:
        from cotprobe.threads import pin_threads

        pin_threads(threads)
    log.info("loaded %s backend for %s in %.1fs", params.backend, params.path, time.perf_counter() - t0)
    return backend, None
