"""A tiny OpenAI-compatible chat completions server for tests (stdlib http.server, a background thread).

It answers from a fixed rule, so a test can check what the client sent by what comes back:
  - the image must be a base64 PNG data URL; the answer names its size: "... a {w}x{h} crop."
  - a stage-2 prompt ("describe the {name} in the close-up region") -> "A {name} seen in a {w}x{h} crop."
    and finish_reason "length" when {name} is in TRUNCATE (to exercise the truncation filter)
  - a prompt without a class name -> "A picture of coloured shapes in a {w}x{h} frame."
Every request body is kept in `requests` (thread-safe append).
"""

from __future__ import annotations

import base64
import io
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from PIL import Image

TRUNCATE = {"circle"}


def answer(prompt: str, w: int, h: int) -> tuple[str, str]:
    m = re.search(r"describe the (.+?) in the close-up region", prompt)
    if m:
        name = m.group(1)
        return f"A {name} seen in a {w}x{h} crop.", "length" if name in TRUNCATE else "stop"
    return f"A picture of coloured shapes in a {w}x{h} frame.", "stop"


class ChatServer:
    def __init__(self, model: str = "test-vlm"):
        self.model, self.requests = model, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                try:
                    assert self.path == "/v1/chat/completions", self.path
                    assert body["model"] == server.model, body["model"]
                    content = body["messages"][0]["content"]
                    url = next(c["image_url"]["url"] for c in content if c["type"] == "image_url")
                    prompt = next(c["text"] for c in content if c["type"] == "text")
                    head, data = url.split(",", 1)
                    assert head == "data:image/png;base64", head
                    w, h = Image.open(io.BytesIO(base64.b64decode(data))).size
                except (AssertionError, KeyError, StopIteration, ValueError, OSError) as exc:
                    self.send_response(400)
                    self.end_headers()
                    self.wfile.write(str(exc).encode())
                    return
                text, finish = answer(prompt, w, h)
                reply = {
                    "id": "x",
                    "object": "chat.completion",
                    "model": server.model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
                    ],
                }
                out = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> ChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
