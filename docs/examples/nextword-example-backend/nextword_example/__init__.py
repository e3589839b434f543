"""An example nextword backend: a character-level n-gram model trained on a small built-in text.

Installing this package registers the ``charngram`` backend through the ``nextword`` entry
point; ``nextword.load("charngram")`` then trains and returns the model.
"""

__version__ = "0.1.0"
