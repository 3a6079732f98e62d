"""A stand-in for Ollama's HTTP API on 127.0.0.1, so a chat really goes through LiteLLM to a backend
(in the tests' own process, or as a service on the lab's systemd host).

It answers /api/chat (streamed or not), /api/show, /api/tags and /api/version, and records every
request it served.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class OllamaStandIn:
    def __init__(self, name: str, port: int = 0) -> None:
        self.name = name
        self.requests: list[tuple[str, dict]] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _reply(self, body: dict | list, ndjson: bool = False) -> None:
                data = ("\n".join(json.dumps(item) for item in body) + "\n" if ndjson else json.dumps(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-ndjson" if ndjson else "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                standin.requests.append((self.path, {}))
                if self.path == "/api/tags":
                    self._reply({"models": [{"name": "phi3:mini", "model": "phi3:mini"}]})
                else:
                    self._reply({"version": "0.0.0-standin"})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                standin.requests.append((self.path, body))
                if self.path == "/api/show":
                    self._reply({"modelfile": "", "parameters": "", "template": "", "details": {"family": "phi3"},
                                 "model_info": {"phi3.context_length": 4096}})
                    return
                message = {"role": "assistant", "content": f"ollama stand-in {standin.name} answers"}
                done = {"model": body.get("model", ""), "created_at": "2026-11-22T00:00:00Z", "done": True,
                        "done_reason": "stop", "prompt_eval_count": 3, "eval_count": 5}
                if body.get("stream"):
                    self._reply([{**done, "message": message, "done": False}, {**done, "message": {
                        "role": "assistant", "content": ""}}], ndjson=True)
                else:
                    self._reply({**done, "message": message})

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OllamaStandIn:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def chats(self) -> int:
        return sum(1 for path, _ in self.requests if path == "/api/chat")


if __name__ == "__main__":  # a stand-in of its own on a lab host: `python3 ollama_standin.py NAME PORT`
    import sys
    standin = OllamaStandIn(sys.argv[1], int(sys.argv[2]))
    standin.server.serve_forever()
