"""Backend-neutral decoding helpers: logits processing and sampling with Hugging Face semantics,
stop strings, incremental detokenization, and the token-by-token decoding loop.

Backends whose engine lacks an option (or implements it with other semantics) use these, so
every backend behaves the same.
"""
