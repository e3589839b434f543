"""The ``nextword convert`` command, added to nextword's command line by the plugin's
``register_commands`` hook.

Only click and the converter's type list are imported here; the converter's heavy dependencies
(``gguf``, ``llama_cpp``, ``torch``, ``transformers``) load when the command runs. Errors are
nextword exceptions: the CLI prints them as one ``error:`` line and exits with status 1.
"""

from __future__ import annotations

from pathlib import Path

import click

from nextword import ModelLoadError
from nextword.backend import looks_like_path
from nextword_llamacpp.convert.gguf_types import GGUF_TYPES

__all__ = ["convert_command"]


@click.command("convert")
@click.argument("src")
@click.argument("out", type=click.Path(path_type=Path))
@click.option(
    "-t",
    "--type",
    "type_",
    type=click.Choice(GGUF_TYPES, case_sensitive=False),
    default="f16",
    show_default=True,
    help="GGUF type to write (K-quants are made by llama.cpp's quantizer).",
)
@click.option("--verify", is_flag=True, help="Compare the GGUF file with transformers on the original model.")
@click.option(
    "--probe",
    "probes",
    multiple=True,
    metavar="TEXT",
    help="A text to compare on (repeatable; implies --verify). Default: a few built-in texts.",
)
def convert_command(src: str, out: Path, type_: str, verify: bool, probes: tuple[str, ...]) -> None:
    """Convert the Hugging Face GPT-2 model SRC (a folder, or a hub id) into the GGUF file OUT.

    OUT may be an existing folder: the file is then named after SRC and the type. The file appears
    only when it is complete.
    """
    from nextword_llamacpp import convert as convert_mod

    folder = _source_folder(src)
    path = convert_mod.convert(folder, out, type=type_, progress=True)
    click.echo(f"wrote {path} ({type_.upper()}, {path.stat().st_size / 1e6:.1f} MB)")
    if verify or probes:
        report = convert_mod.verify(folder, path, list(probes) or None)
        click.echo(str(report))


def _source_folder(src: str) -> Path:
    """The local folder of ``src``: itself when it exists, else the hub snapshot of the hub id."""
    path = Path(src).expanduser()
    if path.exists():
        return path
    if looks_like_path(src):
        raise ModelLoadError(f"model folder not found: {src}")
    from nextword_llamacpp.locate import hub_snapshot

    return hub_snapshot(src, hint="pass a local Hugging Face GPT-2 folder (saved with save_pretrained()) as SRC")
