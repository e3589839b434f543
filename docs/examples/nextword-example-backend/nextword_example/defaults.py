"""Defaults shared by the plugin's declaration and the generator (so neither imports the other)."""

DEFAULT_MODEL = "builtin"
DEFAULT_ORDER = 5
DEFAULT_CONTEXT = 2048
