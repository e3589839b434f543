"""`CharNGramGenerator`: the n-gram engine behind nextword's `BaseGenerator`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from nextword import BackendSpec, BaseGenerator, ModelLoadError
from nextword_example.corpus import BUILTIN_TEXT
from nextword_example.defaults import DEFAULT_CONTEXT, DEFAULT_MODEL, DEFAULT_ORDER
from nextword_example.model import CharNGramModel


# --8<-- [start:documents]
def documents(model: str) -> list[str]:
    """The training paragraphs of ``model``: the built-in text, or a UTF-8 text file.

    Paragraphs are separated by blank lines; line breaks inside a paragraph become spaces.
    """
    if model == DEFAULT_MODEL:
        text = BUILTIN_TEXT
    else:
        path = Path(model).expanduser()
        if not path.is_file():
            raise ModelLoadError(
                f"charngram models are {DEFAULT_MODEL!r} or a UTF-8 text file to train on; {model!r} is neither"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"cannot read the training text {model!r}: {exc}") from exc
    paragraphs = [" ".join(block.split()) for block in text.split("\n\n")]
    found = [p for p in paragraphs if p]
    if not found:
        raise ModelLoadError(f"the training text {model!r} is empty")
    return found


# --8<-- [end:documents]


# --8<-- [start:session]
class NGramSession:
    """The decoding state: only the last ``order - 1`` tokens matter to an n-gram model, so a
    step costs the same whatever the length of the text (no recomputation of the prefix)."""

    def __init__(self, lm: CharNGramModel, prompt_ids: Sequence[int]) -> None:
        self._lm = lm
        self._keep = lm.order - 1
        self._history: list[int] = []
        for token in prompt_ids:
            self.feed(token)

    def logits(self) -> npt.NDArray[np.float64]:
        return self._lm.logits(self._history)

    def feed(self, token_id: int) -> None:
        self._history.append(token_id)
        if len(self._history) > self._keep:
            del self._history[: len(self._history) - self._keep]


# --8<-- [end:session]


# --8<-- [start:generator]
class CharNGramGenerator(BaseGenerator):
    """A character n-gram model trained when it is loaded, behind nextword's whole API."""

    def __init__(
        self, model: str, *, spec: BackendSpec, order: int = DEFAULT_ORDER, context: int = DEFAULT_CONTEXT
    ) -> None:
        # The spec (the plugin's one declaration) gives the generator its name and capabilities.
        super().__init__(model, {"order": order, "context": context}, spec=spec)
        self.lm = CharNGramModel(documents(model), order=order)
        self._context = context

    # The primitives BaseGenerator needs: context length, end-of-text, tokens, logits.

    @property
    def context_length(self) -> int:
        return self._context

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset({self.lm.eos_id})

    def tokenize(self, text: str) -> list[int]:
        return self.lm.encode(text)

    def detokenize(self, token_ids: Sequence[int]) -> str:
        return self.lm.decode(token_ids)

    def next_token_logits(self, token_ids: Sequence[int]) -> npt.NDArray[np.float64]:
        return self.lm.logits(token_ids)

    # An optional faster path: a session that keeps only what the model needs.

    def open_session(self, prompt_ids: Sequence[int]) -> NGramSession:
        return NGramSession(self.lm, prompt_ids)


# --8<-- [end:generator]
