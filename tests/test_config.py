"""DecodingConfig: validation messages, derived values, Hugging Face semantics of the names."""

from __future__ import annotations

import pytest

from nextword import DecodingConfig, InvalidConfig
from nextword._types.decoding_config import DEFAULT_MAX_NEW_TOKENS


def test_defaults_are_greedy() -> None:
    cfg = DecodingConfig()
    assert not cfg.sampling
    assert cfg.new_tokens_for(10) == DEFAULT_MAX_NEW_TOKENS
    assert cfg.non_default_options() == ()


def test_is_frozen() -> None:
    cfg = DecodingConfig()
    with pytest.raises(AttributeError):
        cfg.top_k = 3  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        ({"temperature": -0.1}, "temperature must be a number >= 0.0"),
        ({"top_p": 0.0}, "top_p must be a number in (0.0, 1.0]"),
        ({"top_p": 1.01}, "top_p"),
        ({"top_k": -1}, "top_k must be an integer >= 0"),
        ({"top_k": 2.5}, "top_k must be an integer"),
        ({"min_p": 2}, "min_p must be a number in [0.0, 1.0]"),
        ({"typical_p": 0}, "typical_p"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0.0"),
        ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
        ({"max_new_tokens": -1}, "max_new_tokens must be an integer >= 0"),
        ({"max_length": 0}, "max_length must be an integer >= 1"),
        ({"max_new_tokens": 5, "max_length": 10}, "set only one"),
        ({"min_new_tokens": 9, "max_new_tokens": 5}, "min_new_tokens=9 is larger"),
        ({"num_return_sequences": 0}, "num_return_sequences"),
        ({"num_return_sequences": 3}, "needs sampling"),
        ({"do_sample": False, "top_k": 5}, "only apply when sampling"),
        ({"do_sample": "yes"}, "do_sample must be"),
        ({"stop": [""]}, "non-empty strings"),
        ({"stop": 5}, "stop must be a string or a list"),
        ({"seed": -3}, "seed must be an integer in [0, 18446744073709551615]"),
        ({"seed": 2**64}, "seed must be an integer in [0, 18446744073709551615], got 18446744073709551616"),
        ({"num_return_sequences": 10**6, "do_sample": True}, "num_return_sequences must be an integer in [1, 256]"),
        ({"temperature": float("inf")}, "temperature must be a number >= 0.0 and finite"),
        ({"temperature": 10**400}, "temperature must be a number >= 0.0 and finite"),
        ({"repetition_penalty": float("inf")}, "repetition_penalty must be a number > 0.0 and finite"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": True}, "top_k must be an integer"),
    ],
)
def test_invalid_values_name_the_field_and_range(options: dict[str, object], needle: str) -> None:
    with pytest.raises(InvalidConfig) as err:
        DecodingConfig.from_options(**options)
    assert needle in str(err.value)


def test_unknown_option_suggests_the_closest_name() -> None:
    with pytest.raises(InvalidConfig, match="did you mean 'temperature'"):
        DecodingConfig.from_options(temprature=0.5)
    with pytest.raises(InvalidConfig, match="unknown decoding option 'zzz'"):
        DecodingConfig.from_options(zzz=1)


def test_sampling_is_inferred_from_sampling_options() -> None:
    assert DecodingConfig(top_k=5).sampling
    assert DecodingConfig(temperature=0.7).sampling
    assert not DecodingConfig(temperature=0).sampling  # 0 means greedy
    assert not DecodingConfig(do_sample=True, temperature=0).sampling
    assert DecodingConfig(do_sample=True).sampling
    assert not DecodingConfig(top_k=0).sampling  # 0 keeps everything: nothing asked


def test_max_length_counts_the_prompt() -> None:
    cfg = DecodingConfig(max_length=50)
    assert cfg.new_tokens_for(5) == 45
    assert cfg.new_tokens_for(60) == 0


def test_replace_switches_between_length_limits() -> None:
    cfg = DecodingConfig(max_length=50)
    assert cfg.replace(max_new_tokens=5).max_length is None
    assert DecodingConfig(max_new_tokens=5).replace(max_length=9).max_new_tokens is None


def test_stop_accepts_one_string_or_many() -> None:
    assert DecodingConfig(stop=".").stop == (".",)
    assert DecodingConfig(stop=[".", "\n"]).stop == (".", "\n")
    assert DecodingConfig(stop=".").to_dict()["stop"] == ["."]


def test_ints_are_accepted_for_floats() -> None:
    assert DecodingConfig(temperature=1, do_sample=True).temperature == 1.0
    top_p = DecodingConfig(top_p=1).top_p
    assert isinstance(top_p, float) and top_p == 1.0


def test_min_new_tokens_must_fit_the_token_budget() -> None:
    with pytest.raises(InvalidConfig, match="default limit"):
        DecodingConfig(min_new_tokens=DEFAULT_MAX_NEW_TOKENS + 1)
    assert DecodingConfig(min_new_tokens=60, max_length=100).min_new_tokens == 60  # checked per prompt
