"""``nextword playground``: serve a local model and open the browser playground on it."""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from typing import Any

import click

from nextword.cli.options import backend_options, loading, parse_options
from nextword.errors import NextwordError

__all__ = ["announce", "can_open_browser", "playground"]

_READY_TIMEOUT_S = 60.0


def can_open_browser(environ: dict[str, str] | None = None, platform: str | None = None) -> bool:
    """Whether a graphical browser could be opened here. On Linux and the BSDs that needs a
    display (``DISPLAY`` or ``WAYLAND_DISPLAY``): without one, Python's ``webbrowser`` would fall
    back to a text browser that takes over the terminal the server logs to."""
    env = os.environ if environ is None else environ
    plat = sys.platform if platform is None else platform
    if plat.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        return bool(env.get("DISPLAY") or env.get("WAYLAND_DISPLAY"))
    return True


def announce(
    url: str,
    *,
    open_browser: bool,
    opener: Callable[[str], bool] = webbrowser.open,
    echo: Callable[[str], None] = click.echo,
) -> bool:
    """Print the playground's ``url`` and, when ``open_browser`` is true and a browser can be
    opened here, open it. Returns whether a browser was opened; when none was, the printed line
    says to open the URL by hand (the headless case)."""
    echo(f"nextword playground: {url}")
    if not open_browser:
        return False
    if not can_open_browser():
        echo("no display here to open a browser on: open the address above in a browser")
        return False
    try:
        opened = bool(opener(url))
    except Exception as exc:  # webbrowser raises webbrowser.Error and OS errors alike
        echo(f"could not open a browser ({exc}): open the address above in a browser")
        return False
    if not opened:
        echo("could not open a browser: open the address above in a browser")
    return opened


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port); a clear error when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise NextwordError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port (0 picks a free one)"
        ) from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


@click.command()
@backend_options
@click.option(
    "--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless told otherwise)."
)
@click.option(
    "--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="TCP port (0: any free port)."
)
@click.option(
    "--api-key", default=None, help="Require this key from the page and every client (default: $NEXTWORD_API_KEY)."
)
@click.option("--served-model-name", "name", default=None, help="The model name clients use (default: --model).")
@click.option("--browser/--no-browser", "open_browser", default=True, show_default=True, help="Open the page.")
def playground(
    backend: str | None,
    model: str | None,
    options: tuple[str, ...],
    host: str,
    port: int,
    api_key: str | None,
    name: str | None,
    open_browser: bool,
) -> None:
    """Serve a model with `nextword serve`'s API and open its browser playground at /: live
    next-word suggestions, the explain view and streamed generation. Where no browser can be
    opened (a server without a display) it prints the address to open."""
    try:
        import uvicorn

        from nextword.serve.app import create_app
    except ImportError as exc:
        from nextword.serve.run import INSTALL_HINT

        raise NextwordError(
            f"the playground needs starlette and uvicorn ({exc}); install them with {INSTALL_HINT}"
        ) from None
    from nextword._api import calls as api

    sock = _bind(host, port)  # before loading: a taken port fails at once
    try:
        opts: dict[str, Any] = parse_options(options)
        with loading(backend, model):
            generator = api.load(backend, model, **opts)
        key = api_key if api_key is not None else os.environ.get("NEXTWORD_API_KEY") or None
        app = create_app(generator, name=name, api_key=key)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if ":" in host else host
        url = f"http://{shown}:{bound}/"
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5))

        def when_ready() -> None:
            end = time.monotonic() + _READY_TIMEOUT_S
            while not server.started and time.monotonic() < end and not server.should_exit:
                time.sleep(0.05)
            if server.started:
                announce(url, open_browser=open_browser)
                if key:
                    click.echo("the page asks for the API key once (kept in the browser tab only)")

        threading.Thread(target=when_ready, name="nextword-playground-open", daemon=True).start()
        server.run(sockets=[sock])
    finally:
        sock.close()
