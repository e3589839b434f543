"""Servers the tests start and stop themselves, on 127.0.0.1, bounded in time."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx

STARTUP_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, deadline_s: float, alive: Any = None, headers: dict[str, str] | None = None) -> None:
    """Poll ``url`` until it answers 200 (raises after ``deadline_s`` or when ``alive()`` is false)."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if alive is not None and not alive():
            raise RuntimeError(f"the server behind {url} exited before it was ready")
        try:
            if httpx.get(url, timeout=2.0, headers=headers).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} was not ready within {deadline_s} s")


@contextlib.contextmanager
def app_in_thread(app: Any) -> Iterator[str]:
    """Serve an ASGI app with uvicorn in a thread; yields the base URL (``http://127.0.0.1:P``)."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base + "/health", 30.0, alive=thread.is_alive)
        yield base
    finally:
        server.should_exit = True
        thread.join(15)


def stop(proc: subprocess.Popen[bytes], wait_s: float = 10.0) -> None:
    """Terminate ``proc``; kill it if it has not exited within ``wait_s`` seconds."""
    proc.terminate()
    try:
        proc.wait(wait_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(wait_s)


@contextlib.contextmanager
def process(
    args: Sequence[str], ready_path: str, port: int, log: Path, headers: dict[str, str] | None = None
) -> Iterator[str]:
    """Run a server process (``args``); yields its base URL once ``ready_path`` answers 200;
    terminated (then killed) on exit, test failures included."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                wait_ready(base + ready_path, STARTUP_S, alive=lambda: proc.poll() is None, headers=headers)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}; its log:\n{log.read_text(errors='replace')[-3000:]}") from None
            yield base
        finally:
            stop(proc)
