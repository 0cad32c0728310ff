"""The model server: one load of a model's backend answering its cells over HTTP on loopback.

``cotprobe serve-model`` runs ``serve``: it loads the backend (``hf``, ``vllm``, ...) once and
answers the routes of ``cotprobe.serving.protocol``. The records are the ones the backend returns
in-process (the same code runs, in the server), so a cell's files do not depend on whether it was
served. With a lease file (a shared server, ``cotprobe.serving.leases``) it stops once no cell has
held the lease for its idle timeout; without one it serves until SIGTERM (a server started by hand).

Light at import: the backend is imported when the server starts.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import socket
import threading
import time
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cotprobe.backends.base import Backend, BackendError, complete
from cotprobe.io import InputError, atomic_path
from cotprobe.records import Generation, Prompt
from cotprobe.serving.leases import lease_free
from cotprobe.serving.memo import AnswerMemo
from cotprobe.serving.protocol import error_kind, read_info, spec_key, this_process
from cotprobe.specs import ModelParams

log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: _ModelHTTPServer

    def log_message(self, fmt, *args):  # route access logs to logging, not stderr
        log.debug("%s %s", self.address_string(), fmt % args)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body, ensure_ascii=False).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            self._send(HTTPStatus.OK, self.server.identity)
        elif self.path == "/memo":
            self._send(HTTPStatus.OK, self.server.memo.counts)
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}", "kind": "value"})

    def do_POST(self):
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompts = [Prompt(**p) for p in body.get("prompts", [])]
            with self.server.lock:
                backend = self.server.backend
                if self.path == "/complete_texts":  # the text path of model-based judges
                    replies = complete(
                        backend, body["texts"], seed=int(body["seed"]), sampling=body["sampling"]
                    )
                    out = {"completions": [list(c) for c in replies]}
                elif self.path == "/generate":
                    model_id, sampling = body["model_id"], body["sampling"]
                    gens = self.server.memo.generate(prompts, model_id, sampling, lambda: backend.generate(
                        prompts, model_id=model_id, seed=int(body["seed"]), sampling=sampling))  # fmt: skip
                    out = {"generations": [g.to_dict() for g in gens]}
                elif self.path == "/letter_scores":
                    gens = [Generation(**g) for g in body["generations"]]
                    scores = self.server.memo.letter_scores(
                        prompts, gens, lambda: backend.letter_scores(prompts, gens)
                    )
                    out = {"scores": [asdict(s) for s in scores]}
                else:
                    self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}", "kind": "value"})
                    return
        except (InputError, BackendError, ValueError, KeyError, TypeError) as err:
            log.warning("%s failed: %s", self.path, err)
            status = (
                HTTPStatus.BAD_REQUEST if isinstance(err, InputError) else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send(status, {"error": str(err), "kind": error_kind(err)})
            return
        self._send(HTTPStatus.OK, out)


class _ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: Backend, identity: dict[str, Any]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self.identity = identity
        self.lock = threading.Lock()
        self.memo = AnswerMemo()


def _watch_idle(server, url_file: Path, lease_file: Path, idle_timeout: float, model_id: str) -> None:
    """Stop ``server`` once no cell has held its lease for ``idle_timeout`` s, or its file is gone."""
    spawn_lock = lease_file.parent / "spawn.lock"
    idle_since = None
    while True:
        time.sleep(0.5)
        info = read_info(url_file)
        if info is None or info.get("pid") != os.getpid():  # working dir removed, or replaced
            log.info("%s no longer names this server: stopping", url_file)
            break
        if not lease_free(lease_file):
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since < idle_timeout:
            continue
        # Under the spawn lock a cell cannot attach between this check and the file's removal.
        with spawn_lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if lease_free(lease_file):
                url_file.unlink(missing_ok=True)
                log.info("no cell of %s for %.0fs: stopping", model_id, idle_timeout)
                break
            idle_since = None
    server.shutdown()


def serve(
    model_id: str,
    params: ModelParams,
    url_file: str | Path,
    *,
    lease_file: str | Path | None = None,
    idle_timeout: float = 300.0,
    ledger: str | Path | None = None,
) -> None:
    """Load the backend of ``params`` once and serve it; see the module docstring.

    Args:
        url_file: The address file (``cotprobe.serving.protocol``).
        lease_file: Stop once no cell has held a lease on this file for ``idle_timeout`` seconds
            (or the url file no longer names this server). Without it, serve until SIGTERM/SIGINT.
        ledger: Append one JSON line per model load here (what the study pays in loads).
    """
    from cotprobe.backends import BACKENDS

    url_file = Path(url_file)
    key = spec_key(params.as_param())
    # The file exists from the start but holds no address until the model is loaded: a previous
    # server's address is never reused.
    with atomic_path(url_file) as tmp:
        tmp.write_text(json.dumps({"status": "loading", "spec_key": key, **this_process()}))

    def exit_now(signum, frame):  # while loading: unwind, so the backend's engine processes stop too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)
    t0 = time.perf_counter()
    try:
        backend = BACKENDS.get(params.backend)(path=params.path, **params.settings)
    except Exception as err:
        with atomic_path(url_file) as tmp:
            tmp.write_text(
                json.dumps({"error": f"{type(err).__name__}: {err}", "spec_key": key, **this_process()})
            )
        raise
    with backend:  # its engine stops on every way out (an open vLLM engine hangs the exit)
        load_s = time.perf_counter() - t0
        log.info("loaded %s backend for %s in %.1fs", params.backend, params.path, load_s)
        if ledger is not None:
            entry = {"model": model_id, "spec_key": key, "host": socket.gethostname(), "pid": os.getpid(),
                     "load_s": round(load_s, 2), "time": time.strftime("%Y-%m-%dT%H:%M:%S")}  # fmt: skip
            Path(ledger).parent.mkdir(parents=True, exist_ok=True)
            with open(ledger, "a", encoding="utf-8") as fh:  # one short O_APPEND write: lines never mix
                fh.write(json.dumps(entry) + "\n")
        server = _ModelHTTPServer(backend, {"model": model_id, "spec_key": key, "pid": os.getpid()})
        url = f"http://127.0.0.1:{server.server_address[1]}"

        def stop(signum, frame):
            log.info("signal %d: stopping the server of %s", signum, model_id)
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        with atomic_path(url_file) as tmp:
            tmp.write_text(json.dumps({"url": url, "spec_key": key, "model": model_id, **this_process()}))
        log.info("serving %s on %s (address in %s)", model_id, url, url_file)
        if lease_file is not None:
            args = (server, url_file, Path(lease_file), float(idle_timeout), model_id)
            threading.Thread(target=_watch_idle, args=args, daemon=True).start()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            log.info("%s: prompts answered from memory / computed: %s", model_id, server.memo.counts)
            if (read_info(url_file) or {}).get("pid") == os.getpid():
                url_file.unlink(missing_ok=True)
    log.info("server of %s stopped", model_id)
