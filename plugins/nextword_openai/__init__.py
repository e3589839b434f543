"""nextword's ``openai`` backend: models behind OpenAI-compatible servers (``nextword serve``,
vLLM, llama.cpp's server, llama-cpp-python's server)."""
