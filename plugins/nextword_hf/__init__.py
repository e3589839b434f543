"""nextword's Hugging Face transformers backend (``hf``): any causal LM on PyTorch.

Registered through the public ``nextword`` entry point like any third-party plugin; torch and
transformers are imported only when a model is loaded.
"""
