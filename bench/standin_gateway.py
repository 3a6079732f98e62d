"""A stand-in for the LiteLLM proxy, for fleet benchmarks: the same endpoints the deploy and smoke
use (liveliness, readiness, models, chat; auth with the master key), from the rendered config,
in a few MB instead of LiteLLM's ~300 MB, so 20 of them fit beside each other."""

import json
import os
import signal
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

ARGS = sys.argv[1:]


def arg(name, default):
    return ARGS[ARGS.index(name) + 1] if name in ARGS else default


CONFIG = yaml.safe_load(open(arg("--config", "/app/config.yaml")))
MODELS = list(dict.fromkeys(m["model_name"] for m in CONFIG["model_list"]))
KEY = os.environ["LITELLM_MASTER_KEY"]


class Gateway(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def authorized(self):
        if self.headers.get("Authorization") == f"Bearer {KEY}":
            return True
        self.reply(401, {"error": {"message": "Authentication Error"}})
        return False

    def do_GET(self):
        if self.path == "/health/liveliness":
            self.reply(200, "I'm alive!")
        elif self.path == "/health/readiness":
            self.reply(200, {"status": "healthy"})
        elif self.path == "/v1/models" and self.authorized():
            self.reply(200, {"data": [{"id": name, "object": "model"} for name in MODELS], "object": "list"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        if self.path == "/v1/chat/completions" and self.authorized():
            self.reply(200, {"model": body.get("model"), "choices": [
                {"index": 0, "message": {"role": "assistant", "content": "stand-in"}, "finish_reason": "stop"}]})


# As a container's PID 1 it gets no default SIGTERM handling: without this, `docker restart` waits
# ten seconds and then kills it, which would be counted as the deploy's time.
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
ThreadingHTTPServer((arg("--host", "0.0.0.0"), int(arg("--port", "4000"))), Gateway).serve_forever()
