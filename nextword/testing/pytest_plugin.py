"""nextword's pytest plugin (entry point ``pytest11``): makes the shared fixtures available to any
test suite once nextword is installed — ``gpt2_vocab``, ``tiny_gpt2_dir``, ``tiny_openai_gpt_dir``, ``gemma_gguf``."""

from nextword.testing.pytest_fixtures import gemma_gguf, gpt2_vocab, tiny_gpt2_dir, tiny_openai_gpt_dir

__all__ = ["gemma_gguf", "gpt2_vocab", "tiny_gpt2_dir", "tiny_openai_gpt_dir"]
