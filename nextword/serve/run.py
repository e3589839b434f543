"""Running the server: uvicorn on a loaded generator, with a graceful shutdown.

On SIGTERM (or a first Ctrl-C) the server stops accepting connections and lets the requests in
progress finish for up to ``shutdown_grace_s`` seconds; then it cancels the ones still running
(a stream ends with an error event and ``data: [DONE]``, a plain request gets a 503), waits for
their engine work to stop, and returns. A SIGTERM that ends this way is the server's normal end:
the process then exits with status 0. A Ctrl-C is passed on once the server is down (the
command line exits with 130, as for every other command).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from nextword._contract.protocol import Generator
from nextword.errors import NextwordError
from nextword.serve.limits import Limits

__all__ = ["DEFAULT_SHUTDOWN_GRACE_S", "INSTALL_HINT", "serve"]

INSTALL_HINT = "pip install 'nextword[serve]'"

DEFAULT_SHUTDOWN_GRACE_S = 20.0
"""Seconds running requests get to finish after SIGTERM (within Kubernetes' default 30 s)."""

#: What uvicorn's own graceful window adds to ours: it only acts if the requests cancelled at
#: the end of the grace period have not ended by then (it would cut their connections).
_UVICORN_MARGIN_S = 15.0


def serve(
    generator: Generator,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    log_level: str = "warning",
    metrics: bool = False,
    shutdown_grace_s: float = DEFAULT_SHUTDOWN_GRACE_S,
) -> None:
    """Serve ``generator`` over HTTP until SIGTERM or Ctrl-C, then shut down gracefully (see the
    module's description). Binds ``host`` (loopback by default: pass ``0.0.0.0`` to accept other
    machines, and then set ``api_key``; put TLS in a reverse proxy in front)."""
    try:
        import uvicorn

        from nextword.serve.app import create_app
    except ImportError as exc:
        raise NextwordError(
            f"nextword serve needs starlette and uvicorn ({exc}); install them with {INSTALL_HINT}"
        ) from None
    app = create_app(generator, name=name, api_key=api_key, limits=limits, metrics=metrics)
    state = app.state.server
    shown = f"[{host}]" if ":" in host else host
    print(
        f"nextword serve: {state.name} ({generator.backend}) on http://{shown}:{port}/v1"
        + (" (API key required)" if api_key else ""),
        file=sys.stderr,
        flush=True,
    )

    class _Server(uvicorn.Server):
        """uvicorn's server, telling the application when a shutdown begins."""

        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            first = not self.should_exit
            super().handle_exit(sig, frame)
            self.nextword_signals.append(sig)
            loop = state.loop
            if first and loop is not None:
                loop.call_soon_threadsafe(state.begin_shutdown, shutdown_grace_s)

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            self.nextword_signals: list[int] = []
            if threading.current_thread() is not threading.main_thread():
                yield
                return
            handled = [s for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN]
            previous: dict[int, Any] = {s: signal.signal(s, self.handle_exit) for s in handled}
            try:
                yield
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
            # A Ctrl-C is passed on (the command exits with 130); a SIGTERM drained is a normal end.
            if signal.SIGINT in self.nextword_signals:
                signal.raise_signal(signal.SIGINT)

    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        timeout_graceful_shutdown=int(shutdown_grace_s + _UVICORN_MARGIN_S),
    )
    _Server(config).run()
