"""One model load for every generation cell of a model (issue 5, part 3).

``cotprobe serve-model`` loads a model's backend (``hf``, ``vllm``, ...) once and answers
``generate`` / ``letter_scores`` calls over HTTP on loopback; each generation cell
(``cotprobe generate --server-file ...``) is still its own process and Snakemake job, with its own
output files, part-file resume and staleness, but calls the loaded model through ``RemoteBackend``
instead of loading it. The records are the ones the backend returns in-process (the same code
runs, in the server), so a cell's files do not depend on whether it was served.

In the workflow the server is a Snakemake *service* job (``rule serve_model``) whose consumers are
the model's cells: Snakemake runs them together on one node (a group job on a cluster) and
terminates the server (SIGTERM) once every consumer is done. Only stale cells are consumers, so a
rerun of one cell loads the model once for that cell.

Protocol (JSON over HTTP, requests served one at a time under a lock, since a backend holds one
model and vLLM batches within a call):

* ``GET /health`` -> ``{"model": id, "spec_key": ..., "pid": ...}``
* ``POST /generate`` ``{"prompts": [...], "model_id", "seed", "sampling"}`` -> ``{"generations": [...]}``
* ``POST /letter_scores`` ``{"prompts": [...], "generations": [...]}`` -> ``{"scores": [...]}``
* errors: ``{"error": message, "kind": "input" | "backend" | "value"}`` with status 400/500.

The server writes ``{"status": "loading", ...}`` to its ``--url-file`` at once (the rule truncates
it even before Python starts: Snakemake wants a consumer's inputs to exist when it starts it),
then ``{"url", "spec_key", "pid"}`` once the model is loaded, or ``{"error": ...}`` when loading
fails, so waiting cells fail at once instead of timing out.

Light at import: the backend is imported when the server starts.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cotprobe.backends.base import Backend, BackendError
from cotprobe.io import InputError, atomic_path
from cotprobe.records import Generation, LetterScores, Prompt

log = logging.getLogger(__name__)


def spec_key(spec: dict[str, Any]) -> str:
    """Identity of a model load: the model's config slice (backend, path, settings, version)."""
    load = {k: v for k, v in spec.items() if k != "generation"}  # sampling is per request
    return hashlib.sha256(json.dumps(load, sort_keys=True).encode()).hexdigest()[:16]


def _error_kind(err: Exception) -> str:
    if isinstance(err, InputError):
        return "input"
    if isinstance(err, BackendError):
        return "backend"
    return "value"


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
        else:
            self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}", "kind": "value"})

    def do_POST(self):
        try:
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            prompts = [Prompt(**p) for p in body["prompts"]]
            with self.server.lock:
                backend = self.server.backend
                if self.path == "/generate":
                    gens = backend.generate(
                        prompts, model_id=body["model_id"], seed=int(body["seed"]), sampling=body["sampling"]
                    )
                    out = {"generations": [g.to_dict() for g in gens]}
                elif self.path == "/letter_scores":
                    gens = [Generation(**g) for g in body["generations"]]
                    out = {"scores": [asdict(s) for s in backend.letter_scores(prompts, gens)]}
                else:
                    self._send(HTTPStatus.NOT_FOUND, {"error": f"no route {self.path}", "kind": "value"})
                    return
        except (InputError, BackendError, ValueError, KeyError, TypeError) as err:
            log.warning("%s failed: %s", self.path, err)
            status = (
                HTTPStatus.BAD_REQUEST if isinstance(err, InputError) else HTTPStatus.INTERNAL_SERVER_ERROR
            )
            self._send(status, {"error": str(err), "kind": _error_kind(err)})
            return
        self._send(HTTPStatus.OK, out)


class _ModelHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, backend: Backend, identity: dict[str, Any]):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.backend = backend
        self.identity = identity
        self.lock = threading.Lock()


def serve(model_id: str, spec: dict[str, Any], url_file: str | Path) -> None:
    """Load ``spec``'s backend once and serve it until SIGTERM/SIGINT; see the module docstring."""
    from cotprobe.backends import BACKENDS

    url_file = Path(url_file)
    key = spec_key(spec)
    # The file exists from the start (Snakemake checks a consumer's inputs when it starts it) but
    # holds no address until the model is loaded: a previous server's address is never reused.
    with atomic_path(url_file) as tmp:
        tmp.write_text(json.dumps({"status": "loading", "spec_key": key, "pid": os.getpid()}))

    def exit_now(signum, frame):  # while loading: unwind, so the backend's engine processes stop too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)
    t0 = time.perf_counter()
    try:
        backend = BACKENDS.get(spec["backend"])(path=spec["path"], **spec.get("settings", {}))
    except Exception as err:
        with atomic_path(url_file) as tmp:
            tmp.write_text(json.dumps({"error": f"{type(err).__name__}: {err}", "spec_key": key}))
        raise
    log.info("loaded %s backend for %s in %.1fs", spec["backend"], spec["path"], time.perf_counter() - t0)
    server = _ModelHTTPServer(backend, {"model": model_id, "spec_key": key, "pid": os.getpid()})
    url = f"http://127.0.0.1:{server.server_address[1]}"

    def stop(signum, frame):
        log.info("signal %d: stopping the server of %s", signum, model_id)
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with atomic_path(url_file) as tmp:
        tmp.write_text(json.dumps({"url": url, "spec_key": key, "pid": os.getpid()}))
    log.info("serving %s on %s (address in %s)", model_id, url, url_file)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        url_file.unlink(missing_ok=True)
        close = getattr(backend, "close", None)
        if close is not None:
            close()
        log.info("server of %s stopped", model_id)


class RemoteBackend(Backend):
    """A backend loaded in a ``serve-model`` process, called over HTTP.

    Args:
        path: The server's base URL (``http://127.0.0.1:PORT``).
        timeout: Seconds one call may take (a batch of generations).
    """

    version = 1

    def __init__(self, path: str, *, timeout: float = 24 * 3600.0):
        super().__init__(path, timeout=timeout)
        self.timeout = float(timeout)

    def _post(self, route: str, body: dict[str, Any]) -> dict[str, Any]:
        req = urllib.request.Request(
            self.path + route, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as err:
            try:
                payload = json.loads(err.read())
            except (json.JSONDecodeError, OSError):
                payload = {"error": f"HTTP {err.code}", "kind": "backend"}
            msg = f"model server {self.path}{route}: {payload.get('error')}"
            if payload.get("kind") == "input":
                raise InputError(payload.get("error")) from None
            raise BackendError(msg) from None
        except (urllib.error.URLError, OSError) as err:
            raise BackendError(f"model server {self.path}{route}: {err}") from None

    def generate(self, prompts, *, model_id, seed, sampling) -> list[Generation]:
        body = {
            "prompts": [p.to_dict() for p in prompts],
            "model_id": model_id,
            "seed": seed,
            "sampling": sampling,
        }
        return [Generation(**g) for g in self._post("/generate", body)["generations"]]

    def letter_scores(self, prompts, generations) -> list[LetterScores]:
        body = {"prompts": [p.to_dict() for p in prompts], "generations": [g.to_dict() for g in generations]}
        return [LetterScores(**s) for s in self._post("/letter_scores", body)["scores"]]


def connect(url_file: str | Path, spec: dict[str, Any], *, wait: float = 7200.0) -> RemoteBackend:
    """Wait for the model server of ``spec`` announced in ``url_file`` and return a client.

    Waits while the file is absent or its server does not answer yet (it may still be loading the
    model); fails at once when the server reports a load error or serves another model load.

    Raises:
        BackendError: The server failed to load, serves a different spec, or is not up in ``wait``
            seconds.
    """
    url_file = Path(url_file)
    key = spec_key(spec)
    deadline = time.monotonic() + wait
    last = "no address file yet"
    while time.monotonic() < deadline:
        try:
            info = json.loads(url_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            info = None
        if info is not None and info.get("spec_key") == key:
            if "error" in info:
                raise BackendError(f"model server for {url_file} failed to load: {info['error']}")
            if "url" not in info:
                last = "the server is loading the model"
                time.sleep(0.5)
                continue
            try:
                with urllib.request.urlopen(info["url"] + "/health", timeout=10) as resp:
                    health = json.loads(resp.read())
                if health.get("spec_key") == key:
                    return RemoteBackend(info["url"])
                last = f"{info['url']} serves spec {health.get('spec_key')}, not {key}"
            except (urllib.error.URLError, OSError) as err:
                last = f"{info['url']} not answering ({err})"
        elif info is not None:
            last = f"{url_file} is for spec {info.get('spec_key')}, not {key}"
        time.sleep(0.5)
    raise BackendError(f"no model server for {url_file} after {wait:.0f}s: {last}")
