"""One model load for every generation cell of a model (issue 5, part 3).

``cotprobe serve-model`` loads a model's backend (``hf``, ``vllm``, ...) once and answers
``generate`` / ``letter_scores`` calls over HTTP on loopback; each generation cell
(``cotprobe generate``) is still its own process and Snakemake job, with its own output files,
part-file resume and staleness, but calls the loaded model through ``RemoteBackend`` instead of
loading it. The records are the ones the backend returns in-process (the same code runs, in the
server), so a cell's files do not depend on whether it was served.

**Shared loads in the workflow** (``attach``; no DAG edge, so no cell reruns because a server
started): the first cell of a model on a host spawns a detached server, later cells of that model
on that host attach to it. State lives under ``.cotprobe/model_servers/`` in the working directory:

* ``<host>/<key>.json`` (``<host>.slurm<jobid>/`` inside a SLURM job): the server's address (``key`` = ``spec_key``: the model's load settings,
  absolute path and weights fingerprint, so a rebuilt or retrained model never reuses an old load);
* ``<host>/<key>.lease``: every attached cell holds a shared ``flock`` on it for its lifetime (the
  kernel drops it when the cell dies, even by SIGKILL); the server exits once no cell has held it
  for ``idle_timeout`` seconds;
* ``<host>/spawn.lock``: serialises spawning and idle exits on the host;
* ``loads.jsonl`` (one line per model load: the number the study pays) and ``logs/``.

A cell of a GPU model that has to spawn first stops the idle servers (no lease held) of other
models on the host, so an idle server never holds GPU memory that a new load needs. On a cluster
the cells of a model share a load when they run in one job (a Snakemake group job; see the SLURM
profile); a server dies with its job.

``serve-model --url-file`` alone (no lease) serves until SIGTERM, for a server started by hand;
``generate --server-file`` attaches a cell to it.

Protocol (JSON over HTTP, requests served one at a time under a lock, since a backend holds one
model and vLLM batches within a call):

* ``GET /health`` -> ``{"model": id, "spec_key": ..., "pid": ...}``
* ``POST /generate`` ``{"prompts": [...], "model_id", "seed", "sampling"}`` -> ``{"generations": [...]}``
* ``POST /letter_scores`` ``{"prompts": [...], "generations": [...]}`` -> ``{"scores": [...]}``
* ``POST /complete_texts`` ``{"texts": [...], "seed", "sampling"}`` -> ``{"completions": [...]}`` (judges)
* errors: ``{"error": message, "kind": "input" | "backend" | "value"}`` with status 400/500.

The server writes ``{"status": "loading", ...}`` to its ``--url-file`` at once, then
``{"url", "spec_key", "pid"}`` once the model is loaded, or ``{"error": ...}`` when loading
fails, so waiting cells fail at once instead of timing out. Every version of the file names the
server's process (``pid``, ``host``, ``started``: its start time, so a reused pid is not taken for
it) and the Snakemake run whose cell started it (``run``, from ``$COTPROBE_RUN_ID``): a cell waits
for a server only while that process lives, and at most ``load_timeout`` seconds (what a load
takes; ``model_server.load_timeout``), and a run's end stops only the idle servers it started.

Light at import: the backend is imported when the server starts.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cotprobe.backends.base import Backend, BackendError, Completion, complete
from cotprobe.io import InputError, atomic_path
from cotprobe.records import Generation, LetterScores, Prompt

log = logging.getLogger(__name__)


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
            prompts = [Prompt(**p) for p in body.get("prompts", [])]
            with self.server.lock:
                backend = self.server.backend
                if self.path == "/complete_texts":  # the text path of model-based judges
                    replies = complete(
                        backend, body["texts"], seed=int(body["seed"]), sampling=body["sampling"]
                    )
                    out = {"completions": [list(c) for c in replies]}
                elif self.path == "/generate":
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


LOAD_TIMEOUT = 600.0  # seconds a cell waits for a server to load (model_server.load_timeout)


def _start_time(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc), or None if unknown."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _this_process() -> dict[str, Any]:
    """What a server's file records to name its process (see ``_gone``) and the run that started it."""
    pid = os.getpid()
    return {"pid": pid, "host": socket.gethostname(), "started": _start_time(pid),
            "run": os.environ.get("COTPROBE_RUN_ID")}  # fmt: skip


def _pid_alive(pid: int) -> bool:
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


def _read_info(url_file: Path) -> dict[str, Any] | None:
    try:
        return json.loads(url_file.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _gone(info: dict[str, Any]) -> bool:
    """True when the server process an address file names is known to have ended: its pid is not
    running on this host, or runs another process (started at another time). A file written on
    another host (a shared filesystem) is never known gone here."""
    if "pid" not in info or info.get("host", socket.gethostname()) != socket.gethostname():
        return False
    pid = int(info["pid"])
    if not _pid_alive(pid):
        return True
    started = info.get("started")
    return started is not None and _start_time(pid) not in (None, started)


def _live_pid(info: dict[str, Any] | None) -> int | None:
    """The pid of the server an address file names, if that server is running (loading or serving)."""
    if info is None or "error" in info or "pid" not in info or _gone(info):
        return None
    return int(info["pid"])


def _lease_free(lease_file: Path) -> bool:
    """True when no cell holds a lease on ``lease_file`` (an exclusive lock can be taken)."""
    with lease_file.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        fcntl.flock(fh, fcntl.LOCK_UN)
        return True


def _watch_idle(server, url_file: Path, lease_file: Path, idle_timeout: float, model_id: str) -> None:
    """Stop ``server`` once no cell has held its lease for ``idle_timeout`` s, or its file is gone."""
    spawn_lock = lease_file.parent / "spawn.lock"
    idle_since = None
    while True:
        time.sleep(0.5)
        info = _read_info(url_file)
        if info is None or info.get("pid") != os.getpid():  # working dir removed, or replaced
            log.info("%s no longer names this server: stopping", url_file)
            break
        if not _lease_free(lease_file):
            idle_since = None
            continue
        idle_since = idle_since or time.monotonic()
        if time.monotonic() - idle_since < idle_timeout:
            continue
        # Under the spawn lock a cell cannot attach between this check and the file's removal.
        with spawn_lock.open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if _lease_free(lease_file):
                url_file.unlink(missing_ok=True)
                log.info("no cell of %s for %.0fs: stopping", model_id, idle_timeout)
                break
            idle_since = None
    server.shutdown()


def serve(
    model_id: str,
    spec: dict[str, Any],
    url_file: str | Path,
    *,
    lease_file: str | Path | None = None,
    idle_timeout: float = 300.0,
    ledger: str | Path | None = None,
) -> None:
    """Load ``spec``'s backend once and serve it; see the module docstring.

    Args:
        lease_file: Stop once no cell has held a lease on this file for ``idle_timeout`` seconds
            (or the url file no longer names this server). Without it, serve until SIGTERM/SIGINT.
        ledger: Append one JSON line per model load here (what the study pays in loads).
    """
    from cotprobe.backends import BACKENDS

    url_file = Path(url_file)
    key = spec_key(spec)
    # The file exists from the start but holds no address until the model is loaded: a previous
    # server's address is never reused.
    with atomic_path(url_file) as tmp:
        tmp.write_text(json.dumps({"status": "loading", "spec_key": key, **_this_process()}))

    def exit_now(signum, frame):  # while loading: unwind, so the backend's engine processes stop too
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, exit_now)
    t0 = time.perf_counter()
    try:
        backend = BACKENDS.get(spec["backend"])(path=spec["path"], **spec.get("settings", {}))
    except Exception as err:
        with atomic_path(url_file) as tmp:
            tmp.write_text(
                json.dumps({"error": f"{type(err).__name__}: {err}", "spec_key": key, **_this_process()})
            )
        raise
    with backend:  # its engine stops on every way out (an open vLLM engine hangs the exit)
        load_s = time.perf_counter() - t0
        log.info("loaded %s backend for %s in %.1fs", spec["backend"], spec["path"], load_s)
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
            tmp.write_text(json.dumps({"url": url, "spec_key": key, "model": model_id, **_this_process()}))
        log.info("serving %s on %s (address in %s)", model_id, url, url_file)
        if lease_file is not None:
            args = (server, url_file, Path(lease_file), float(idle_timeout), model_id)
            threading.Thread(target=_watch_idle, args=args, daemon=True).start()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
            if (_read_info(url_file) or {}).get("pid") == os.getpid():
                url_file.unlink(missing_ok=True)
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
                payload = json.loads(resp.read())
            if not isinstance(payload, dict):
                raise TypeError(f"expected a JSON object, got {type(payload).__name__}")
            return payload
        except (ValueError, TypeError) as err:  # garbage in a 200 (not JSON, or not an object)
            raise BackendError(f"model server {self.path}{route}: unreadable answer ({err})") from None
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
        return self._records("/generate", body, "generations", Generation)

    def letter_scores(self, prompts, generations) -> list[LetterScores]:
        body = {"prompts": [p.to_dict() for p in prompts], "generations": [g.to_dict() for g in generations]}
        return self._records("/letter_scores", body, "scores", LetterScores)

    def complete_texts(self, texts, *, seed, sampling) -> list[Completion]:
        body = {"texts": list(texts), "seed": seed, "sampling": sampling}
        return self._records("/complete_texts", body, "completions", Completion)

    def _records(self, route: str, body: dict[str, Any], key: str, cls) -> list:
        """``payload[key]`` as ``cls`` records; an answer of another shape is a BackendError."""
        payload = self._post(route, body)
        try:
            return [cls(**r) if isinstance(r, dict) else cls(*r) for r in payload[key]]
        except (KeyError, TypeError) as err:
            raise BackendError(
                f"model server {self.path}{route}: answer without valid {key!r} ({err})"
            ) from None


def connect(url_file: str | Path, spec: dict[str, Any], *, wait: float = LOAD_TIMEOUT) -> RemoteBackend:
    """Wait for the model server of ``spec`` announced in ``url_file`` and return a client.

    Waits while the file is absent or its server does not answer yet (it may still be loading the
    model), at most ``wait`` seconds; fails at once when the server reports a load error, serves
    another model load, or its process is gone (died or stopped, while loading or after).

    Raises:
        BackendError: The server failed to load, is not running, serves a different spec, or is not
            up in ``wait`` seconds.
    """
    url_file = Path(url_file)
    key = spec_key(spec)
    deadline = time.monotonic() + wait
    last = "no address file yet"
    while True:
        info = _read_info(url_file)
        if info is not None and info.get("spec_key") == key:
            if "error" in info:
                raise BackendError(f"model server for {url_file} failed to load: {info['error']}")
            if _gone(info):
                when = "after loading the model" if "url" in info else "while loading the model"
                raise BackendError(
                    f"model server for {url_file} (pid {info['pid']}) is not running: it died or was"
                    f" stopped {when}; start it again"
                )
            if "url" not in info:
                last = "the server is still loading the model"
            else:
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
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise BackendError(
        f"no model server for {url_file} after {wait:.0f}s: {last} (the wait is model_server.load_timeout"
        " or --server-wait)"
    )


SERVER_ROOT = Path(".cotprobe/model_servers")


def _scope() -> str:
    """Which cells may share a server: those on this host, and within one SLURM job when in one
    (a server lives on its job's GPUs and dies with the job, so another job must not attach to it
    or stop it)."""
    job = os.environ.get("SLURM_JOB_ID")
    return socket.gethostname() + (f".slurm{job}" if job else "")


class Lease:
    """A cell's hold on a shared server: a shared ``flock`` the kernel drops when the cell dies."""

    def __init__(self, lease_file: Path):
        self._fh = lease_file.open("a")
        fcntl.flock(self._fh, fcntl.LOCK_SH)

    def release(self) -> None:
        if not self._fh.closed:
            self._fh.close()


def _stop_if_idle(url_file: Path, reason: str) -> bool:
    """SIGTERM the server ``url_file`` names if it runs and no cell holds its lease, and wait (up to
    120 s) until it has exited (its memory is free). The caller holds the host's spawn lock, so no
    cell can attach meanwhile. Returns whether it stopped one."""
    info = _read_info(url_file)
    pid = _live_pid(info)
    if pid is None:
        return False
    with url_file.with_suffix(".lease").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a cell uses it
        log.info("stopping the idle server of %s (pid %s) %s", info.get("model"), pid, reason)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 120
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    return True


def _stop_idle_servers(host_dir: Path, keep: str) -> None:
    """Stop the servers of other models on this host that no cell uses (frees their GPU memory)."""
    for url_file in sorted(host_dir.glob("*.json")):
        if url_file.stem != keep:
            _stop_if_idle(url_file, "to free its GPUs")


def attach(
    model_id: str,
    spec: dict[str, Any],
    *,
    root: str | Path = SERVER_ROOT,
    idle_timeout: float = 300.0,
    threads: int = 0,
    gpus: int = 0,
    wait: float = LOAD_TIMEOUT,
) -> tuple[RemoteBackend, Lease]:
    """A client of this host's shared server for ``spec``, spawned first if none runs.

    Keep the returned lease until the cell is done (the server outlives no cell); see the module
    docstring for the files under ``root``.

    Raises:
        BackendError: The server could not be started or failed to load the model.
    """
    root = Path(root)
    key = spec_key(spec)
    host_dir = root / _scope()
    host_dir.mkdir(parents=True, exist_ok=True)
    url_file, lease_file = host_dir / f"{key}.json", host_dir / f"{key}.lease"
    lease = Lease(lease_file)  # before looking: from now on the server cannot go idle under us
    try:
        with (host_dir / "spawn.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            pid = _live_pid(_read_info(url_file))
            if pid is None:
                if gpus > 0:
                    _stop_idle_servers(host_dir, keep=key)
                name = re.sub(r"[^\w.-]+", "_", model_id)  # a judge's model id may be a path
                log_file = (
                    root / "logs" / f"{name}.{socket.gethostname()}.{int(time.time())}.{os.getpid()}.log"
                )
                log_file.parent.mkdir(parents=True, exist_ok=True)
                cmd = [sys.executable, "-m", "cotprobe", "serve-model", "--model", model_id,
                       "--spec", json.dumps(spec), "--url-file", str(url_file), "--lease-file", str(lease_file),
                       "--idle-timeout", str(idle_timeout), "--ledger", str(root / "loads.jsonl"),
                       "--threads", str(threads)]  # fmt: skip
                with log_file.open("w") as out:
                    # Own session: the server outlives this cell (and a Ctrl-C aimed at it).
                    proc = subprocess.Popen(
                        cmd,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                # Hold the spawn lock until the server has named itself in the file (its first act),
                # so no other cell of the model can start a second one.
                deadline = time.monotonic() + 120
                while (_read_info(url_file) or {}).get("pid") != proc.pid:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise BackendError(f"model server for {model_id} did not start; see {log_file}")
                    time.sleep(0.05)
                log.info("started model server pid %d for %s (log: %s)", proc.pid, model_id, log_file)
            else:
                log.info("attaching to the model server pid %s of %s", pid, model_id)
        return connect(url_file, spec, wait=wait), lease
    except BaseException:
        lease.release()
        raise


def stop_servers(root: str | Path = SERVER_ROOT, *, run: str | None = None) -> int:
    """Stop the idle shared servers (no cell holds a lease) of this host (and SLURM job) under ``root``
    that run ``run`` started (every idle one when ``run`` is None); returns how many.

    A Snakemake run's end calls this with its own run id (``$COTPROBE_RUN_ID``): a server another run
    started, or one a cell still uses, is left alone (it exits after its idle timeout).
    """
    host_dir = Path(root) / _scope()
    if not host_dir.is_dir():
        return 0
    n = 0
    with (host_dir / "spawn.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # no cell attaches between the lease check and the SIGTERM
        for url_file in sorted(host_dir.glob("*.json")):
            if run is None or (_read_info(url_file) or {}).get("run") == run:
                n += _stop_if_idle(url_file, "at the end of its run" if run else "")
    return n


def count_loads(root: str | Path = SERVER_ROOT) -> dict[str, int]:
    """Model loads recorded in ``root/loads.jsonl``, by model."""
    ledger = Path(root) / "loads.jsonl"
    counts: dict[str, int] = {}
    if ledger.exists():
        for line in ledger.read_text().splitlines():
            model = json.loads(line)["model"]
            counts[model] = counts.get(model, 0) + 1
    return counts
