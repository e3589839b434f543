"""The fixed grid of blocks a prompt is evaluated in, so that a prompt extending another shares
its state.

An engine's numbers for a token depend slightly on the batch it was read in. Evaluating every
prompt in the same blocks (a pure function of its length) makes its result independent of what
was evaluated before, and a prompt that extends a cached one by a few tokens shares all of its
blocks up to the last block end both have: a text that grows by a word is one short decode on
the state of the text before it, with the numbers of the longer text evaluated alone.
"""

from __future__ import annotations

import functools

__all__ = ["BLOCK_SIZES", "prompt_blocks", "shared_block_end"]

#: Block sizes, largest first. Measured on Gemma 3 270M Q4_K_M (llama.cpp, 2 threads): a
#: 512-token prompt in blocks of 128 costs what one batch does (in blocks of 64, 13% more); a
#: decode costs about 24 ms plus 4 ms a token (1 token 27 ms, 4 tokens 43, 16 tokens 85, 32
#: tokens 150). Finer blocks (16 and 4) made a new word cheaper still but a short prompt read
#: cold up to 40% dearer, and changed Gemma Q4_K_M's numbers for prompts of a few tokens; with
#: 32, a prompt under 32 tokens is one block, read as it always was.
BLOCK_SIZES = (128, 32)


@functools.lru_cache(maxsize=4096)
def prompt_blocks(n: int, sizes: tuple[int, ...] = BLOCK_SIZES) -> tuple[int, ...]:
    """The ends of the blocks a prompt of ``n`` tokens is evaluated in, ascending (the last is
    ``n``): as many blocks of ``sizes[0]`` tokens as fit, then of ``sizes[1]``, and so on, then
    the rest. With (128, 32), 200 tokens are read as 128 + 32 + 32 + 8."""
    ends: list[int] = []
    pos = 0
    for size in sizes:
        while pos + size <= n:
            pos += size
            ends.append(pos)
    if pos < n:
        ends.append(n)
    return tuple(ends)


def shared_block_end(n: int, m: int, limit: int, sizes: tuple[int, ...] = BLOCK_SIZES) -> int:
    """The last block end that prompts of ``n`` and ``m`` tokens both have, at most ``limit``
    (the length of their common prefix), or 0."""
    mine = prompt_blocks(n, sizes)
    shared = 0
    for end in prompt_blocks(m, sizes):
        if end > limit:
            break
        if end in mine:
            shared = end
    return shared
