"""The ``nextword`` command line (also ``python -m nextword``).

User errors print one line (``error: ...``) to stderr and exit with status 1; usage errors exit
with 2; no traceback is shown for either.

Modules: ``app`` (the group and :func:`main`), ``options`` (options and helpers shared by the
commands, plugins' included), one module per group of commands (``generation``: ``generate``;
``words``: ``predict`` and ``explain``; ``evaluation``: ``eval``; ``inspection``: ``backends`` and
``config``; ``finetune``: ``finetune``; ``serve``: ``serve``; ``playground``: ``playground``) and ``plot``
(``predict --plot``). Commands import ``options``, never ``app``, so there is no import cycle.
"""

from __future__ import annotations

from nextword.cli.app import cli, main

__all__ = ["cli", "main"]
