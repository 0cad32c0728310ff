"""The client side of the model server: ``RemoteBackend`` and ``connect``."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from cotprobe.backends.base import Backend, BackendError, Completion
from cotprobe.io import InputError
from cotprobe.records import Generation, LetterScores
from cotprobe.serving.protocol import LOAD_TIMEOUT, gone, read_info, spec_key


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
        info = read_info(url_file)
        if info is not None and info.get("spec_key") == key:
            if "error" in info:
                raise BackendError(f"model server for {url_file} failed to load: {info['error']}")
            if gone(info):
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
