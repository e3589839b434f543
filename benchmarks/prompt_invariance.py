"""Do prompts evaluated in one ``llama_decode`` give the bits of each prompt evaluated alone?

Why the llamacpp backend evaluates each new prompt in a decode of its own in the ``exact``
batching mode. On a context laid out as nextword's sequence pool makes it (8 sequences with
their own KV cells, 512-token micro-batches), several new prompts are decoded together, and each
prompt's logits after its last token, and the logits after one more token (which read the
prompt's KV cells), are compared bit for bit with the same prompt decoded alone. llama.cpp
splits such a batch into micro-batches that hold an equal number of tokens of each sequence, so
a prompt among longer or shorter ones is evaluated in pieces. Patterns of prompt lengths from 1
to 300 tokens, each also with a one-token step of another sequence in the same decode (where
that sequence is free). Random token ids (``--seed``, default 1); flash attention off, as in
nextword by default (``--flash-attn on`` for the other kernel); llama.cpp's C API only, no
nextword code. Prints one line per pattern: how many prompts differ (logits after the prompt,
one token later).

    python benchmarks/prompt_invariance.py gpt2-124m.Q8_0.gguf --threads 2
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
from raw_context import Entry, RawContext, load_model

PATTERNS = [
    [5, 5, 5, 5],
    [4, 5, 6, 7, 3, 5, 4],
    [1, 2, 3],
    [1, 40, 7],
    [100, 3, 250, 17],
    [31, 32, 33, 64, 65],
    [300, 200],
]
STEPPING = 7  # the sequence that takes a one-token step in the "with a step" decodes


def prompt_entries(prompts: list[list[int]]) -> tuple[list[Entry], list[int]]:
    """The entries of all prompts in one decode (logits after each prompt) and their indices."""
    entries: list[Entry] = []
    ends = []
    for seq, ids in enumerate(prompts):
        entries += [(t, p, seq, p == len(ids) - 1) for p, t in enumerate(ids)]
        ends.append(len(entries) - 1)
    return entries, ends


def trial(c: RawContext, rng: np.random.Generator, lengths: list[int], with_step: bool) -> tuple[int, int]:
    """Prompts (and logits one token later) differing between together and alone."""
    prompts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=n)] for n in lengths]
    after = [int(t) for t in rng.integers(10, c.n_vocab - 10, size=len(lengths))]

    def next_row(seq: int) -> Any:
        c.decode([(after[seq], len(prompts[seq]), seq, True)])
        return c.row(0)

    alone = []
    for seq, ids in enumerate(prompts):
        c.clear()
        c.prompt(seq, ids)
        alone.append((c.row(-1), next_row(seq)))
    c.clear()
    entries, ends = prompt_entries(prompts)
    if with_step:
        c.decode([(11 + i, i, STEPPING, i == 9) for i in range(10)])
        entries.append((21, 10, STEPPING, True))
    c.decode(entries)
    firsts = sum(not np.array_equal(c.row(end), alone[seq][0]) for seq, end in enumerate(ends))
    nexts = sum(not np.array_equal(next_row(seq), alone[seq][1]) for seq in range(len(prompts)))
    return firsts, nexts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a .gguf file")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1, help="seed of the random token ids")
    parser.add_argument("--flash-attn", choices=["off", "on"], default="off", help="off: nextword's default")
    args = parser.parse_args()
    c = RawContext(load_model(args.model), threads=args.threads, flash_attn=args.flash_attn == "on")
    rng = np.random.default_rng(args.seed)
    for lengths in PATTERNS:
        for with_step in (False, True):
            if with_step and len(lengths) >= STEPPING:
                continue
            firsts, nexts = trial(c, rng, lengths, with_step)
            step = " + a step of another sequence" if with_step else ""
            print(
                f"prompts of {lengths}{step}: differing {firsts}/{len(lengths)}, one token later {nexts}/{len(lengths)}"
            )


if __name__ == "__main__":
    main()
