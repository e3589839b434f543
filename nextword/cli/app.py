"""The ``nextword`` command group: the built-in commands, those plugins add through the
``register_commands`` hook, and :func:`main`, which turns errors into one line and an exit status."""

from __future__ import annotations

import codecs
import io
import sys

import click

from nextword.cli.evaluation import eval_command
from nextword.cli.finetune import finetune
from nextword.cli.generation import generate
from nextword.cli.inspection import backends, config
from nextword.cli.serve import serve
from nextword.cli.words import explain, predict
from nextword.errors import NextwordError
from nextword.registry import plugin_manager

__all__ = ["cli", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="nextword")
def cli() -> None:
    """nextword: next-word prediction and text generation with pluggable backends."""


for _command in (generate, predict, explain, eval_command, backends, config, finetune, serve):
    cli.add_command(_command)


_commands_added = False


def _add_plugin_commands() -> None:
    global _commands_added
    if not _commands_added:
        _commands_added = True
        plugin_manager().hook.register_commands(cli=cli)


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


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 a nextword error, 2 a usage error)."""
    _escape_unencodable_output()
    try:
        _add_plugin_commands()
        cli.main(args=argv, prog_name="nextword", standalone_mode=False)
    except NextwordError as exc:
        click.secho(f"error: {exc}", fg="red", err=True)
        return 1
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0
