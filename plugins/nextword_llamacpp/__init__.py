"""nextword's llama.cpp backend (``llamacpp``): GGUF models through llama-cpp-python.

Registered through the public ``nextword`` entry point like any third-party plugin
(:mod:`nextword_llamacpp.plugin`); llama-cpp-python is imported only when a model is loaded
(:mod:`nextword_llamacpp.generator`). :mod:`nextword_llamacpp.convert` turns a Hugging Face GPT-2
folder into a GGUF file; the backend does that on its own, once, when given such a folder.

Importing this package imports neither llama_cpp nor gguf.
"""
