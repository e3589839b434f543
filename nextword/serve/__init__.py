"""``nextword serve``: an OpenAI-compatible HTTP server over any nextword backend.

:func:`create_app` builds the ASGI application for a loaded generator; :func:`serve` runs it with
uvicorn. The command line (``nextword serve``) is defined in :mod:`nextword.cli.serve`. The
browser playground at ``/`` is static package data (``playground/``) served by
:mod:`nextword.serve.static`; ``nextword playground`` (:mod:`nextword.cli.playground`) starts it.
Starlette and uvicorn are imported only here (install ``nextword[serve]``).
"""

from __future__ import annotations

from nextword.serve.limits import Limits
from nextword.serve.run import serve

__all__ = ["Limits", "create_app", "serve"]


def __getattr__(name: str) -> object:
    if name == "create_app":
        from nextword.serve.app import create_app

        return create_app
    raise AttributeError(name)
