"""Do prompts evaluated in one ``llama_decode`` give the bits of each prompt evaluated alone?

Why the llamacpp backend evaluates each new prompt in a decode of its own in the ``exact``
batching mode. On a context laid out as nextword's sequence pool makes it (8 sequences with
their own KV cells, 512-token micro-batches), several new prompts are decoded together, and each
prompt's logits after its last token, and the logits after one more token (which read the
prompt's KV cells), are compared bit for bit with the same prompt decoded alone. llama.cpp
splits such a batch into micro-batches that hold an equal number of tokens of each sequence, so
a prompt among longer or shorter ones is evaluated in pieces. Patterns of prompt lengths from 1
to 300 tokens, each also with a one-token step of another sequence in the same decode (where
that sequence is free). Random token ids (``--seed``, default 1); llama.cpp's C API only, no nextword code.
Prints one line per pattern: how many prompts differ (logits after the prompt, one token later).

    python benchmarks/prompt_invariance.py gpt2-124m.Q8_0.gguf --threads 2
"""

from __future__ import annotations

import argparse
from typing import Any

import llama_cpp
import numpy as np

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


class Context:
    """A context of 8 sequences with their own KV cells, and one-call decoding helpers."""

    def __init__(self, path: str, threads: int) -> None:
        self._silence = llama_cpp.llama_log_callback(lambda *args: None)
        llama_cpp.llama_log_set(self._silence, None)
        llama_cpp.llama_backend_init()
        self.model = llama_cpp.llama_model_load_from_file(path.encode(), llama_cpp.llama_model_default_params())
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {path}")
        self.n_vocab = int(llama_cpp.llama_vocab_n_tokens(llama_cpp.llama_model_get_vocab(self.model)))
        params = llama_cpp.llama_context_default_params()
        params.n_ctx, params.n_seq_max, params.kv_unified = 1024 * 8, 8, False
        params.n_batch = params.n_ubatch = 512
        params.n_threads = params.n_threads_batch = threads
        self.ctx = llama_cpp.llama_init_from_model(self.model, params)
        self.mem = llama_cpp.llama_get_memory(self.ctx)
        self.batch = llama_cpp.llama_batch_init(1024, 0, 1)

    def decode(self, entries: list[tuple[int, int, int, bool]]) -> None:
        """One decode of (token, position, sequence, wants logits) entries."""
        b = self.batch
        for i, (token, pos, seq, logits) in enumerate(entries):
            b.token[i], b.pos[i], b.n_seq_id[i] = token, pos, 1
            b.seq_id[i][0], b.logits[i] = seq, logits
        b.n_tokens = len(entries)
        if llama_cpp.llama_decode(self.ctx, b) != 0:
            raise RuntimeError("llama_decode failed")

    def row(self, i: int) -> Any:
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(self.ctx, i), shape=(self.n_vocab,)).copy()

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(self.mem, True)


def prompt_entries(prompts: list[list[int]]) -> tuple[list[tuple[int, int, int, bool]], list[int]]:
    """The entries of all prompts in one decode (logits after each prompt) and their indices."""
    entries: list[tuple[int, int, int, bool]] = []
    ends = []
    for seq, ids in enumerate(prompts):
        entries += [(t, p, seq, p == len(ids) - 1) for p, t in enumerate(ids)]
        ends.append(len(entries) - 1)
    return entries, ends


def trial(c: Context, rng: np.random.Generator, lengths: list[int], with_step: bool) -> tuple[int, int]:
    """Prompts (and logits one token later) differing between together and alone."""
    prompts = [[int(t) for t in rng.integers(10, c.n_vocab - 10, size=n)] for n in lengths]
    after = [int(t) for t in rng.integers(10, c.n_vocab - 10, size=len(lengths))]

    def next_row(seq: int) -> Any:
        c.decode([(after[seq], len(prompts[seq]), seq, True)])
        return c.row(0)

    alone = []
    for seq, ids in enumerate(prompts):
        c.clear()
        c.decode([(t, p, seq, p == len(ids) - 1) for p, t in enumerate(ids)])
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
    args = parser.parse_args()
    c = Context(args.model, args.threads)
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
