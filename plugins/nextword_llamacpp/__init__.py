"""nextword's llama.cpp backend (``llamacpp``): GGUF models through llama-cpp-python.

Registered through the public ``nextword`` entry point like any third-party plugin
(:mod:`nextword_llamacpp.plugin`, which also adds ``nextword convert`` from
:mod:`nextword_llamacpp.commands`). llama-cpp-python is imported only when a model is loaded:

* :mod:`nextword_llamacpp.generator`: the backend, its KV-cache session and batches;
* :mod:`nextword_llamacpp.locate`: the GGUF file a model string names (folders converted once, cached);
* :mod:`nextword_llamacpp.gguf_check`: a GGUF header checked before llama.cpp trusts it;
* :mod:`nextword_llamacpp.convert`: a Hugging Face GPT-2 folder converted to GGUF, and verified;
* :mod:`nextword_llamacpp.llama_log`: llama.cpp's log, captured for error messages.

Importing this package imports neither llama_cpp nor gguf.
"""
