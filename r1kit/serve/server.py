"""Starting and stopping the server: the engine thread, the app, uvicorn.

SIGINT / SIGTERM: new requests get 503 at once; in-flight ones finish (uvicorn waits up to
`grace_s` for their connections), then the engine thread stops; nothing hangs.
"""

from __future__ import annotations

import logging
from pathlib import Path

from r1kit.inference.engine import Engine
from r1kit.serve.app import Limits, build_app
from r1kit.serve.loop import EngineLoop

log = logging.getLogger("r1kit.serve")


def make_server(engine: Engine, host: str = "127.0.0.1", port: int = 8000, api_key: str | None = None,
                max_queue: int = 256, model_name: str = "r1kit", limits: Limits | None = None, grace_s: float = 10.0,
                log_level: str = "info"):
    """(uvicorn.Server, EngineLoop) for `engine`, not started: `server.run()` serves until a signal
    (the CLI), or a test runs it in a thread and sets `server.should_exit`."""
    import uvicorn

    loop = EngineLoop(engine, max_queue=max_queue)
    app = build_app(loop, model_name, api_key, limits)

    class Server(uvicorn.Server):
        def handle_exit(self, sig, frame):
            loop._stopping = True  # new requests get 503 from now on; in-flight ones go on
            super().handle_exit(sig, frame)

    config = uvicorn.Config(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=grace_s,
                            lifespan="on")
    return Server(config), loop


def read_api_key(api_key: str | None, api_key_file: str | None) -> str | None:
    if api_key_file is not None:
        key = Path(api_key_file).read_text(encoding="utf-8").strip()
        if not key:
            raise ValueError(f"the API key file {api_key_file} is empty")
        return key
    return api_key
