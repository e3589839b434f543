"""nextword's pytest plugin (entry point ``pytest11``): makes the shared fixtures available to any
test suite once nextword is installed — ``gpt2_vocab``, ``tiny_gpt2_dir``, ``tiny_openai_gpt_dir``."""

from nextword.testing.pytest_fixtures import gpt2_vocab, tiny_gpt2_dir, tiny_openai_gpt_dir

__all__ = ["gpt2_vocab", "tiny_gpt2_dir", "tiny_openai_gpt_dir"]
