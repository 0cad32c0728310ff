"""A small OpenAI-compatible chat-completions server over the transformers backend.

Usage::

    python -m cotprobe.serving.openai_server --model-path resources/models/tiny --port 8000
    # then a model in config: {backend: openai, path: <served name>,
    #                          settings: {base_url: "http://127.0.0.1:8000/v1"}}

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` (plus ``GET /health``) with the
subset of the protocol this project uses, following vLLM's server where OpenAI has no rule:

* messages with string or list content; images as ``image_url`` parts holding ``data:`` URIs
  (no other URL is fetched);
* ``continue_final_message`` / ``add_generation_prompt`` (vLLM's extra body; setting both is
  a 400), ``echo`` (the continued assistant text is put before the reply);
* ``max_tokens`` (or ``max_completion_tokens``; default 256), ``temperature`` (0 is greedy;
  default 1), ``top_p``, ``seed`` (``stop`` and ``n > 1`` are refused);
* ``logprobs`` / ``top_logprobs``: raw log-softmax values over the full vocabulary (vLLM's
  default ``raw_logprobs``), one entry per generated token including the stop token, capped by
  ``--max-logprobs`` (default 20 as in vLLM; -1 for no cap);
* the ``usage`` block (prompt and completion tokens, the stop token counted).

Requests run one at a time under a lock: it is for tests on loopback and for small CPU runs,
where one process holding one model load answers every (bench, variant, seed) cell of that model;
for throughput on GPUs, use ``vllm serve``.

Port 0 binds a free port. The first line on stdout is ``serving <name> on http://HOST:PORT/v1``.

Light at import: torch and transformers are imported when the server starts.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import logging
import threading
import time
import uuid
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MAX_TOKENS = 256


class RequestError(Exception):
    """A request the server refuses; answered as an OpenAI-style error with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def decode_data_uri(url: str):
    """A ``data:image/...;base64,...`` URI as an RGB PIL image.

    Raises:
        RequestError: Not a base64 data URI, or not a readable image.
    """
    from PIL import Image

    head, sep, data = url.partition(",")
    if not (url.startswith("data:") and sep and head.endswith(";base64")):
        raise RequestError(400, "image_url must be a base64 data URI (data:image/...;base64,...)")
    try:
        with Image.open(io.BytesIO(base64.b64decode(data, validate=True))) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, ValueError, SyntaxError) as err:
        raise RequestError(400, f"cannot decode image_url: {err}") from None


def convert_messages(messages: Any) -> tuple[list[dict[str, Any]], list[Any]]:
    """OpenAI chat messages -> messages for ``apply_chat_template`` and the images in order."""
    if not isinstance(messages, list) or not messages:
        raise RequestError(400, "messages must be a non-empty list")
    out, images = [], []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ("system", "user", "assistant"):
            raise RequestError(400, f"messages[{i}]: need a role of system, user or assistant")
        content = message.get("content")
        if isinstance(content, str):
            out.append({"role": message["role"], "content": content})
            continue
        if not isinstance(content, list):
            raise RequestError(400, f"messages[{i}].content must be a string or a list of parts")
        parts = []
        for part in content:
            kind = part.get("type") if isinstance(part, dict) else None
            if kind == "text":
                parts.append({"type": "text", "text": str(part.get("text", ""))})
            elif kind == "image_url":
                url = part.get("image_url")
                url = url.get("url") if isinstance(url, dict) else url
                image = decode_data_uri(str(url))
                images.append(image)
                parts.append({"type": "image", "image": image})
            else:
                raise RequestError(400, f"messages[{i}]: unsupported content part type {kind!r}")
        out.append({"role": message["role"], "content": parts})
    return out, images


class ChatEngine:
    """Answers chat-completion requests with one loaded HFBackend.

    Args:
        backend: A loaded ``cotprobe.backends.hf.HFBackend``.
        name: The served model name (requests must name it).
        max_logprobs: Largest ``top_logprobs`` allowed; -1 for the whole vocabulary.
    """

    def __init__(self, backend: Any, name: str, max_logprobs: int = 20):
        self.backend = backend
        self.name = name
        self.max_logprobs = int(max_logprobs)
        self.lock = threading.Lock()

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "owned_by": "cotprobe"}]}

    def complete(self, req: dict[str, Any]) -> dict[str, Any]:
        """One chat completion (``n=1``, no streaming)."""
        import torch
        from transformers import GenerationConfig

        if req.get("model") != self.name:
            raise RequestError(404, f"The model {req.get('model')!r} does not exist (serving {self.name!r})")
        if req.get("stream") or int(req.get("n") or 1) != 1:
            raise RequestError(400, "only n=1 without streaming is supported")
        if req.get("stop"):
            raise RequestError(400, "stop is not supported")
        cont = bool(req.get("continue_final_message", False))
        add_prompt = bool(req.get("add_generation_prompt", True))
        if cont and add_prompt:
            raise RequestError(400, "continue_final_message and add_generation_prompt cannot both be true")
        messages, images = convert_messages(req.get("messages"))
        if cont and messages[-1]["role"] != "assistant":
            raise RequestError(400, "continue_final_message needs a final assistant message")
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens") or DEFAULT_MAX_TOKENS
        temperature = float(1.0 if req.get("temperature") is None else req["temperature"])
        top_p = float(1.0 if req.get("top_p") is None else req["top_p"])
        want_logprobs = bool(req.get("logprobs", False))
        k = int(req.get("top_logprobs") or 0)
        if k and not want_logprobs:
            raise RequestError(400, "top_logprobs needs logprobs=true")
        if k < -1 or (self.max_logprobs != -1 and (k == -1 or k > self.max_logprobs)):
            raise RequestError(400, f"top_logprobs must be in [0, {self.max_logprobs}] (or -1 when uncapped)")
        if int(max_tokens) < 1 or temperature < 0 or not 0 < top_p <= 1:
            raise RequestError(400, "need max_tokens >= 1, temperature >= 0 and 0 < top_p <= 1")

        b = self.backend
        text = b.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=add_prompt, continue_final_message=cont
        )
        enc = b.processor(text=[text], images=images or None, return_tensors="pt").to(b.device)
        common = {
            "max_new_tokens": int(max_tokens),
            "num_beams": 1,
            "repetition_penalty": 1.0,
            "pad_token_id": b.pad_id,
            "eos_token_id": b.eos_ids,
            "return_dict_in_generate": True,
            "output_logits": want_logprobs,
        }
        if temperature == 0:
            config = GenerationConfig(do_sample=False, **common)
        else:
            config = GenerationConfig(do_sample=True, temperature=temperature, top_p=top_p, top_k=0, **common)
        with self.lock, torch.inference_mode():
            if config.do_sample and req.get("seed") is not None:
                torch.manual_seed(int(req["seed"]))
            out = b.model.generate(**enc, generation_config=config)
        n_prompt = int(enc["input_ids"].shape[1])
        row = out.sequences[0, n_prompt:].tolist()
        stop = next((i for i, t in enumerate(row) if t in b.eos_ids), None)
        kept = row if stop is None else row[: stop + 1]
        content = b.tokenizer.decode(kept, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        if req.get("echo") and cont:
            content = messages[-1]["content"] + content
        logprobs = None
        if want_logprobs:
            logprobs = {"content": [self._logprob_entry(out.logits[i][0], t, k) for i, t in enumerate(kept)]}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "logprobs": logprobs,
                    "finish_reason": "length" if stop is None else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": n_prompt,
                "completion_tokens": len(kept),
                "total_tokens": n_prompt + len(kept),
            },
        }

    def _logprob_entry(self, logits: Any, token_id: int, k: int) -> dict[str, Any]:
        """The OpenAI logprobs entry of one generated token, with its ``k`` best alternatives."""
        import torch

        lp = torch.log_softmax(logits.float(), dim=-1)
        k = lp.shape[-1] if k == -1 else min(k, lp.shape[-1])
        values, ids = torch.topk(lp, k) if k else (lp[:0], lp[:0].long())

        def item(tid: int, value: float) -> dict[str, Any]:
            token = self.backend.tokenizer.decode([tid], skip_special_tokens=False)
            return {"token": token, "logprob": value, "bytes": list(token.encode("utf-8"))}

        entry = item(token_id, float(lp[token_id]))
        entry["top_logprobs"] = [item(int(t), float(v)) for t, v in zip(ids.tolist(), values.tolist())]
        return entry


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    engine: ChatEngine  # set on the subclass made by make_server

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        kind = "invalid_request_error" if status < 500 else "server_error"
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") == "/v1/models":
            self._send(200, self.engine.models())
        elif self.path == "/health":
            self._send(200, {"status": "ok"})
        else:
            self._error(404, f"no route {self.path}")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            self._error(404, f"no route {self.path}")
            return
        try:
            req = json.loads(raw or b"{}")
            if not isinstance(req, dict):
                raise RequestError(400, "the body must be a JSON object")
            self._send(200, self.engine.complete(req))
        except json.JSONDecodeError as err:
            self._error(400, f"invalid JSON: {err}")
        except RequestError as err:
            self._error(err.status, str(err))
        except Exception as err:  # a bug or a model failure: answer 500, keep serving
            log.exception("chat completion failed")
            self._error(int(HTTPStatus.INTERNAL_SERVER_ERROR), f"{type(err).__name__}: {err}")


def make_server(engine: ChatEngine, host: str = "127.0.0.1", port: int = 0) -> ThreadingHTTPServer:
    """A threading HTTP server answering with ``engine`` (not started; port 0 picks a free one)."""
    handler = type("Handler", (_Handler,), {"engine": engine})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m cotprobe.serving.openai_server", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model-path", required=True, help="checkpoint directory or hub id")
    parser.add_argument("--served-model-name", help="name requests use (default: --model-path)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--max-logprobs", type=int, default=20, help="cap on top_logprobs; -1: none")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from cotprobe.backends.hf import HFBackend

    backend = HFBackend(args.model_path, device=args.device, dtype=args.dtype)
    name = args.served_model_name or args.model_path
    server = make_server(ChatEngine(backend, name, args.max_logprobs), args.host, args.port)
    host, port = server.server_address[:2]
    print(f"serving {name} on http://{host}:{port}/v1", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
