"""The ``nextword`` command group: the built-in commands, those plugins add through the
``register_commands`` hook, and :func:`main`, which turns errors into one line and an exit status."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import os
import sys

import click

from nextword._plugins.registry import add_plugin_commands
from nextword.cli.evaluation import eval_command
from nextword.cli.finetune import finetune
from nextword.cli.generation import generate
from nextword.cli.inspection import backends, config
from nextword.cli.playground import playground
from nextword.cli.serve import serve
from nextword.cli.signals import Terminated, exit_status, termination_signals_raise
from nextword.cli.words import explain, predict
from nextword.errors import NextwordError

__all__ = ["DEBUG_ENV", "cli", "main"]

DEBUG_ENV = "NEXTWORD_DEBUG"
"""Set to ``1`` to let an unexpected exception's traceback through instead of one error line."""


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nextword")
def cli() -> None:
    """nextword: next-word prediction and text generation with pluggable backends."""


for _command in (generate, predict, explain, eval_command, backends, config, finetune, serve, playground):
    cli.add_command(_command)


_commands_added = False


def _add_plugin_commands() -> None:
    global _commands_added
    if not _commands_added:
        _commands_added = True
        add_plugin_commands(cli)


def _escape_unencodable_output() -> None:
    """On a stdout/stderr whose encoding cannot hold every character (Korean on a latin-1 or
    ASCII terminal), write what it cannot hold as backslash escapes instead of failing."""
    for stream in (sys.stdout, sys.stderr):
        encoding = getattr(stream, "encoding", None) or "utf-8"
        try:
            utf = codecs.lookup(encoding).name.startswith("utf")
        except LookupError:
            utf = False
        if not utf and isinstance(stream, io.TextIOWrapper) and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")


_OUTPUT_ERRNOS = (errno.EPIPE, errno.ENOSPC, errno.EBADF, errno.EIO, errno.EDQUOT)


def _output_lost(exc: OSError) -> int:
    """Report (on stderr) that the output could not be written, and silence stdout so that the
    interpreter's final flush does not fail again with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        click.secho(f"error: cannot write the output: {exc.strerror or exc}", fg="red", err=True)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives until the process exits
    return 1


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a nextword error, 2 a usage error)."""
    _escape_unencodable_output()
    if sys.stdout is None:  # started with stdout closed: whatever the command prints would be lost
        click.secho("error: standard output is closed; nothing can be written", fg="red", err=True)
        return 1
    try:
        with termination_signals_raise():
            _add_plugin_commands()
            cli.main(args=argv, prog_name="nextword", standalone_mode=False)
            sys.stdout.flush()  # a full disk or closed pipe shows here, not at interpreter exit
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            raise
        return _output_lost(exc)
    except NextwordError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 1
    except click.exceptions.Abort as exc:
        interrupted = exc.__context__  # click turns Ctrl-C inside a command into Abort
        if isinstance(interrupted, KeyboardInterrupt):
            click.echo(str(interrupted) if isinstance(interrupted, Terminated) else "interrupted", err=True)
            return exit_status(interrupted)
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt as exc:
        click.echo(str(exc) if isinstance(exc, Terminated) else "interrupted", err=True)
        return exit_status(exc)
    except Exception as exc:  # a bug (nextword's or a plugin's): one line, the traceback on request
        if os.environ.get(DEBUG_ENV, "").strip() == "1":
            raise
        click.secho(
            f"error: unexpected {type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 to see the traceback)",
            fg="red",
            err=True,
        )
        return 1
    return 0
