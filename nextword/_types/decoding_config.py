"""The decoding configuration: one frozen, validated object shared by every backend.

Field names and meanings follow Hugging Face ``GenerationConfig`` where one exists, so a user
who knows transformers knows nextword. Invalid values fail at construction with a message that
names the field and the allowed range.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Iterable, Mapping
from typing import Any

from nextword.errors import InvalidConfig

__all__ = ["DEFAULT_MAX_NEW_TOKENS", "DecodingConfig", "MAX_NUM_RETURN_SEQUENCES", "MAX_SEED", "SAMPLING_FIELDS"]

DEFAULT_MAX_NEW_TOKENS = 40
"""Tokens generated when neither ``max_new_tokens`` nor ``max_length`` is given."""

MAX_SEED = 2**64 - 1
"""Largest ``seed``: seeds are unsigned 64-bit integers on every backend."""

MAX_NUM_RETURN_SEQUENCES = 256
"""Most ``num_return_sequences`` per prompt: every sequence is decoded (and, on hf, held in one
batch), so the bound keeps one call's memory and time in proportion to what a user can read."""

SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "typical_p")
"""Options that only matter when sampling."""


@dataclasses.dataclass(frozen=True)
class DecodingConfig:
    """How to choose the next tokens. Immutable; build a changed copy with :meth:`replace`.

    Defaults are greedy decoding of :data:`DEFAULT_MAX_NEW_TOKENS` tokens on every backend.
    Sampling starts when ``do_sample=True``, or when ``do_sample`` is left unset and a
    sampling option (temperature, top_k, top_p, min_p, typical_p) is given.
    ``temperature=0`` always means greedy.
    """

    max_new_tokens: int | None = None
    """Tokens to generate, not counting the prompt. Exclusive with ``max_length``."""
    max_length: int | None = None
    """Total length in tokens, prompt included (as in transformers). Exclusive with ``max_new_tokens``."""
    min_new_tokens: int = 0
    """End-of-sequence is forbidden until this many tokens were generated."""
    do_sample: bool | None = None
    """Sample (True) or take the most likely token (False); None decides from the sampling options."""
    temperature: float | None = None
    """Divides the logits before sampling; 0 means greedy. Unset means 1.0."""
    top_k: int | None = None
    """Keep only the k most likely tokens; 0 or unset keeps all."""
    top_p: float | None = None
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    min_p: float | None = None
    """Drop tokens less likely than min_p times the most likely token's probability."""
    typical_p: float | None = None
    """Locally typical sampling mass (Meister et al.), as in transformers."""
    repetition_penalty: float = 1.0
    """Hugging Face rule: logits of tokens already present are divided (if > 0) or multiplied (if < 0)."""
    no_repeat_ngram_size: int = 0
    """No n-gram of token ids (prompt included) may occur twice."""
    num_return_sequences: int = 1
    """Independent samples per prompt (needs sampling); at most :data:`MAX_NUM_RETURN_SEQUENCES`."""
    stop: tuple[str, ...] = ()
    """Stop strings: the text ends right before the first occurrence of any of them."""
    seed: int | None = None
    """Seed for sampling, in [0, :data:`MAX_SEED`]; the same seed gives the same sample on the same
    backend and model."""

    def __post_init__(self) -> None:
        stop = self.stop
        if isinstance(stop, str):
            object.__setattr__(self, "stop", (stop,))
        elif isinstance(stop, Iterable):
            object.__setattr__(self, "stop", tuple(stop))
        else:
            raise InvalidConfig(f"stop must be a string or a list of strings, got {type(stop).__name__}")
        self._validate()

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """The names of all decoding options."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_options(cls, base: DecodingConfig | None = None, /, **options: Any) -> DecodingConfig:
        """Build a config from keyword options on top of ``base`` (defaults if None).

        Raises :class:`~nextword.errors.InvalidConfig` for an unknown name, suggesting the
        closest valid one, and for any invalid value.
        """
        check_option_names(options)
        base = base if base is not None else cls()
        if "max_new_tokens" in options and options["max_new_tokens"] is not None:
            options.setdefault("max_length", None)
        if "max_length" in options and options["max_length"] is not None:
            options.setdefault("max_new_tokens", None)
        return dataclasses.replace(base, **options)

    def replace(self, **options: Any) -> DecodingConfig:
        """A copy with the given options changed (same rules as :meth:`from_options`)."""
        return self.from_options(self, **options)

    def to_dict(self) -> dict[str, Any]:
        """All options as a plain dict (stop strings as a list), e.g. for JSON."""
        d = dataclasses.asdict(self)
        d["stop"] = list(self.stop)
        return d

    # ---- derived values -----------------------------------------------------------------

    @property
    def sampling(self) -> bool:
        """True when tokens are sampled, False for greedy decoding."""
        if self.temperature == 0:
            return False
        if self.do_sample is not None:
            return self.do_sample
        return any(self._sets(name) for name in SAMPLING_FIELDS)

    def new_tokens_for(self, prompt_tokens: int) -> int:
        """How many tokens to generate after a prompt of ``prompt_tokens`` tokens.

        With ``max_length`` this is ``max_length - prompt_tokens`` (never below 0).
        """
        if self.max_length is not None:
            return max(self.max_length - prompt_tokens, 0)
        if self.max_new_tokens is not None:
            return self.max_new_tokens
        return DEFAULT_MAX_NEW_TOKENS

    def non_default_options(self) -> tuple[str, ...]:
        """Names of the options whose value changes what is generated."""
        return tuple(name for name in self.field_names() if self._sets(name))

    def _sets(self, name: str) -> bool:
        value = getattr(self, name)
        neutral = {
            "temperature": (None, 1.0),
            "top_k": (None, 0),
            "top_p": (None, 1.0),
            "min_p": (None, 0.0),
            "typical_p": (None, 1.0),
            "repetition_penalty": (1.0,),
            "no_repeat_ngram_size": (0,),
            "num_return_sequences": (1,),
            "min_new_tokens": (0,),
            "stop": ((),),
        }.get(name, (None,))
        return value not in neutral

    # ---- validation ---------------------------------------------------------------------

    def _validate(self) -> None:
        _int(self, "max_new_tokens", low=0, optional=True)
        _int(self, "max_length", low=1, optional=True)
        _int(self, "min_new_tokens", low=0)
        if self.max_new_tokens is not None and self.max_length is not None:
            raise InvalidConfig(
                f"max_new_tokens={self.max_new_tokens} and max_length={self.max_length} were both given; "
                "set only one (max_length counts the prompt, max_new_tokens does not)"
            )
        if self.max_new_tokens is None and self.max_length is None and self.min_new_tokens > DEFAULT_MAX_NEW_TOKENS:
            raise InvalidConfig(
                f"min_new_tokens={self.min_new_tokens} is larger than the default limit of "
                f"{DEFAULT_MAX_NEW_TOKENS} new tokens; set max_new_tokens too"
            )
        if self.max_new_tokens is not None and self.min_new_tokens > self.max_new_tokens:
            raise InvalidConfig(
                f"min_new_tokens={self.min_new_tokens} is larger than max_new_tokens={self.max_new_tokens}"
            )
        if self.do_sample is not None and not isinstance(self.do_sample, bool):
            raise InvalidConfig(f"do_sample must be True, False or None, got {self.do_sample!r}")
        _float(self, "temperature", low=0.0, optional=True, hint="0 means greedy")
        _int(self, "top_k", low=0, optional=True, hint="0 keeps every token")
        _float(self, "top_p", low=0.0, high=1.0, low_open=True, optional=True)
        _float(self, "min_p", low=0.0, high=1.0, optional=True)
        _float(self, "typical_p", low=0.0, high=1.0, low_open=True, optional=True)
        _float(self, "repetition_penalty", low=0.0, low_open=True, hint="1.0 means no penalty")
        _int(self, "no_repeat_ngram_size", low=0, hint="0 turns it off")
        _int(self, "num_return_sequences", low=1, high=MAX_NUM_RETURN_SEQUENCES)
        _int(self, "seed", low=0, high=MAX_SEED, optional=True)
        for s in self.stop:
            if not isinstance(s, str) or not s:
                raise InvalidConfig(f"stop strings must be non-empty strings, got {s!r}")
        if self.do_sample is False:
            given = [name for name in SAMPLING_FIELDS if self._sets(name) and name != "temperature"]
            if self._sets("temperature") and self.temperature != 0:
                given.insert(0, "temperature")
            if given:
                raise InvalidConfig(
                    f"{', '.join(given)} only apply when sampling, but do_sample=False; drop them or set do_sample=True"
                )
        if self.num_return_sequences > 1 and not self.sampling:
            raise InvalidConfig(
                f"num_return_sequences={self.num_return_sequences} needs sampling: greedy decoding "
                "(do_sample=False, or temperature=0) gives one sequence; sample with a temperature above 0"
            )


def check_option_names(options: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidConfig` if any key is not a decoding option, with a suggestion."""
    valid = DecodingConfig.field_names()
    for name in options:
        if name not in valid:
            close = difflib.get_close_matches(name, valid, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid options: {', '.join(valid)}"
            raise InvalidConfig(f"unknown decoding option {name!r}{hint}")


def _range_text(low: float | None, high: float | None, low_open: bool) -> str:
    if high is None:
        return f"{'>' if low_open else '>='} {low}"
    return f"in {'(' if low_open else '['}{low}, {high}]"


def _shown(value: object) -> str:
    """``repr(value)``, shortened: a huge number or string must not flood the error message."""
    text = repr(value)
    return text if len(text) <= 60 else f"{text[:40]}... ({type(value).__name__} of {len(text)} characters)"


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def _int(
    cfg: DecodingConfig, name: str, *, low: int, high: int | None = None, optional: bool = False, hint: str = ""
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        extra = f" ({hint})" if hint else ""
        bound = f">= {low}" if high is None else f"in [{low}, {high}]"
        raise InvalidConfig(f"{name} must be an integer {bound}{extra}, got {_shown(value)}")


def _float(
    cfg: DecodingConfig,
    name: str,
    *,
    low: float,
    high: float | None = None,
    low_open: bool = False,
    optional: bool = False,
    hint: str = "",
) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and _finite(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (high is None or value <= high)
    if not ok:
        extra = f" ({hint})" if hint else ""
        finite = "" if high is not None else " and finite"
        raise InvalidConfig(
            f"{name} must be a number {_range_text(low, high, low_open)}{finite}{extra}, got {_shown(value)}"
        )
    object.__setattr__(cfg, name, float(value))
