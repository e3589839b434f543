"""The exceptions nextword raises.

Every error nextword raises on purpose derives from :class:`NextwordError`, so an application
can catch one class. Each message says what was wrong and, where there is one, how to fix it.
"""

from __future__ import annotations

__all__ = [
    "BackendNotFound",
    "Cancelled",
    "ContextLengthExceeded",
    "EngineError",
    "InvalidConfig",
    "InvalidInput",
    "InvalidState",
    "ModelLoadError",
    "NextwordError",
    "TrainingInterrupted",
    "UnsupportedOption",
]


class NextwordError(Exception):
    """Base class of every error nextword raises on purpose."""


class BackendNotFound(NextwordError, LookupError):
    """No backend of that name is registered, or it is registered but cannot be used here."""


class ModelLoadError(NextwordError):
    """A model could not be found, downloaded or loaded."""


class InvalidConfig(NextwordError, ValueError):
    """A decoding option, backend option or setting has an invalid name or value."""


class InvalidInput(NextwordError, ValueError):
    """A prompt or text passed to the API is not usable (empty, wrong type, ...)."""


class InvalidState(NextwordError, RuntimeError):
    """An object was used in a state that does not allow it: a generator after ``close()``, the
    result of a stream that was closed or not read to its end."""


class UnsupportedOption(NextwordError):
    """The backend cannot honour a decoding option that was asked for.

    Raised before the engine is called; nothing is ever silently ignored.
    """

    def __init__(self, message: str, *, option: str = "", backend: str = "") -> None:
        super().__init__(message)
        self.option = option
        self.backend = backend


class ContextLengthExceeded(NextwordError, ValueError):
    """The prompt, or the prompt plus the tokens to generate, do not fit the model's context window."""

    def __init__(self, message: str, *, n_tokens: int = 0, limit: int = 0) -> None:
        super().__init__(message)
        self.n_tokens = n_tokens
        self.limit = limit


class EngineError(NextwordError):
    """The engine failed while running a request that had passed every check (for example a
    llama.cpp decode error). The generator may need to be reloaded."""


class Cancelled(NextwordError):
    """The call was cancelled (by a :class:`nextword._runtime.scheduler.CancelScope`, e.g. an asyncio task
    that was cancelled) before its next engine step; the generator stays usable."""


class TrainingInterrupted(NextwordError):
    """A fine-tuning run was stopped by Ctrl-C after a checkpoint was saved; the same call with
    ``resume=True`` (``--resume``) continues it to the result an uninterrupted run gives."""

    def __init__(self, message: str, *, checkpoint: str = "", step: int = 0) -> None:
        super().__init__(message)
        self.checkpoint = checkpoint
        self.step = step
