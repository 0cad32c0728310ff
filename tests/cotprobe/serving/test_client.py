"""The model server's client: it waits only for a live server and raises one error for any bad answer."""

from __future__ import annotations

import json
import os

import pytest

from cotprobe.backends.base import BackendError
from cotprobe.serving.client import RemoteBackend, connect
from cotprobe.serving.protocol import spec_key


def _spec(model_dir):
    return {"backend": "hf", "path": str(model_dir), "settings": {"device": "cpu"}, "version": 1}


def test_a_reused_pid_is_not_taken_for_the_server(tmp_path):
    spec = _spec(tmp_path / "model")
    url_file = tmp_path / "server.json"
    # The pid now runs another process (this one) than the server that wrote the file (started earlier).
    url_file.write_text(json.dumps({"url": "http://127.0.0.1:9", "spec_key": spec_key(spec), "pid": os.getpid(),
                                    "started": "1"}))  # fmt: skip
    with pytest.raises(BackendError, match="is not running"):
        connect(url_file, spec, wait=60)


@pytest.mark.parametrize(
    "answer, expected",
    [
        (b"<html>oops</html>", "unreadable answer"),
        (b"[1, 2]", "unreadable answer"),
        (b'{"generations": [{"id": "x"}]}', "answer without valid 'generations'"),
        (b'{"other": 1}', "answer without valid 'generations'"),
    ],
)
def test_a_server_that_answers_garbage_is_a_backend_error(answer, expected, make_prompt):
    """Whatever a loopback 'server' answers with status 200, the client raises one BackendError."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Garbage(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Garbage)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = RemoteBackend(f"http://127.0.0.1:{server.server_address[1]}", timeout=30)
        sampling = {"max_new_tokens": 4, "temperature": 0.0, "top_p": 1.0, "batch_size": 1}
        with pytest.raises(BackendError, match=expected):
            client.generate([make_prompt(0)], model_id="m", seed=0, sampling=sampling)
    finally:
        server.shutdown()
        server.server_close()
