"""Running the server: uvicorn on a loaded generator."""

from __future__ import annotations

import sys

from nextword._contract.protocol import Generator
from nextword.errors import NextwordError
from nextword.serve.requests import Limits

__all__ = ["serve", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'nextword[serve]'"


def serve(
    generator: Generator,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    name: str | None = None,
    api_key: str | None = None,
    limits: Limits | None = None,
    log_level: str = "warning",
) -> None:
    """Serve ``generator`` over HTTP until interrupted. Binds ``host`` (loopback by default: pass
    ``0.0.0.0`` to accept other machines, and then set ``api_key``)."""
    try:
        import uvicorn

        from nextword.serve.app import create_app
    except ImportError as exc:
        raise NextwordError(
            f"nextword serve needs starlette and uvicorn ({exc}); install them with {INSTALL_HINT}"
        ) from None
    app = create_app(generator, name=name, api_key=api_key, limits=limits)
    shown = f"[{host}]" if ":" in host else host
    print(
        f"nextword serve: {app.state.server.name} ({generator.backend}) on http://{shown}:{port}/v1"
        + (" (API key required)" if api_key else ""),
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_graceful_shutdown=5)
