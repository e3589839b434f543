"""A real ``nextword serve`` process for the hostile-client tests and the benchmark: started on
127.0.0.1 on a free port, waited for until ready, stopped on exit (a failed test included), with
its stdout and stderr kept apart; plus a reader of its Prometheus ``/metrics``."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx

from tests import servers

__all__ = ["ServeProcess", "parse_metrics", "serve_process"]

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text: ``{(name, frozenset(labels)): value}`` for every sample line."""
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        assert match is not None, f"not a Prometheus sample line: {line!r}"
        name, labels, value = match.groups()
        out[(name, frozenset(_LABEL.findall(labels or "")))] = float(value)
    return out


class ServeProcess:
    """A running server: its base URL, process, headers (the API key) and log files."""

    def __init__(self, proc: subprocess.Popen[bytes], base: str, headers: dict[str, str], stdout: Path, stderr: Path):
        self.proc = proc
        self.base = base
        self.headers = headers
        self.stdout = stdout
        self.stderr = stderr

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """The server's metrics now."""
        response = httpx.get(self.base + "/metrics", headers=self.headers, timeout=30)
        response.raise_for_status()
        return parse_metrics(response.text)

    def metric(self, name: str, **labels: str) -> float:
        """One sample's value now (0 when absent)."""
        return self.metrics().get((name, frozenset(labels.items())), 0.0)


@contextlib.contextmanager
def serve_process(
    model: str | os.PathLike[str], log_dir: Path, *extra: str, api_key: str | None = "k3y", backend: str = "llamacpp"
) -> Iterator[ServeProcess]:
    """``nextword serve --backend BACKEND --model MODEL --metrics EXTRA...`` on a free port of
    127.0.0.1; yields once ``/health`` answers; terminated (then killed) on exit."""
    port = servers.free_port()
    args: Sequence[str] = [
        "-m", "nextword", "serve", "--backend", backend, "--model", str(model), "--port", str(port), "--metrics",
        *(["--api-key", api_key] if api_key else []), *extra,
    ]  # fmt: skip
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout, stderr = log_dir / "stdout.log", log_dir / "stderr.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(stdout, "wb") as out, open(stderr, "wb") as err:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=err, env=env)
        base = f"http://127.0.0.1:{port}"
        try:
            try:
                servers.wait_ready(base + "/health", servers.STARTUP_S, alive=lambda: proc.poll() is None)
            except (RuntimeError, TimeoutError) as exc:
                raise RuntimeError(f"{exc}; its stderr:\n{stderr.read_text(errors='replace')[-3000:]}") from None
            yield ServeProcess(proc, base, headers, stdout, stderr)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(40)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
