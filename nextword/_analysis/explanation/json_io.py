"""An explanation as JSON data and back."""

from __future__ import annotations

import math
from typing import Any

from nextword._analysis.explanation.records import Alternative, Explanation, TokenExplanation, WordExplanation
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import Candidate, Prediction, Settings
from nextword.errors import InvalidInput

__all__ = ["from_json", "to_json"]


def to_json(expl: Explanation) -> dict[str, Any]:
    """A JSON-friendly dict of the explanation (settings included); :func:`from_json` reads it back."""
    return expl.to_dict()


def from_json(data: dict[str, Any]) -> Explanation:
    """The :class:`Explanation` that :func:`to_json` wrote (derived totals are recomputed)."""
    try:
        tokens = tuple(
            TokenExplanation(
                **{k: v for k, v in t.items() if k != "alternatives"},
                alternatives=tuple(Alternative(**a) for a in t["alternatives"]),
            )
            for t in data["tokens"]
        )
        words = tuple(WordExplanation(**w) for w in data["words"])
        s = data["settings"]
        settings = Settings(
            backend=s["backend"],
            model=s["model"],
            options=dict(s.get("options", {})),
            decoding=DecodingConfig.from_options(None, **s.get("decoding", {})),
            sources=dict(s.get("sources", {})),
        )
        completion = data.get("completion")
        return Explanation(
            text=data["text"],
            tokens=tokens,
            words=words,
            top=data["top"],
            settings=settings,
            completion=None if completion is None else _prediction(completion, settings),
        )
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"not an explanation written by nextword._analysis.explanation.to_json: {exc}") from None


def _prediction(data: dict[str, Any], settings: Settings) -> Prediction:
    """The completion as :meth:`~nextword._types.results.Prediction.to_dict` wrote it (its settings are
    the explanation's)."""
    candidates = tuple(
        Candidate(
            text=c["text"],
            token_ids=tuple(c["token_ids"]),
            prob=c["prob"],
            logprob=-math.inf if c["logprob"] is None else c["logprob"],
            remaining=c.get("remaining"),
        )
        for c in data["candidates"]
    )
    return Prediction(
        prompt=data["prompt"],
        candidates=candidates,
        settings=settings,
        unit=data["unit"],
        unexplored_mass=data["unexplored_mass"],
        typed=data.get("typed"),
        prefix_prob=data.get("prefix_prob"),
    )
