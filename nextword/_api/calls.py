"""The top-level functions: ``load``, ``generate``, ``stream``, ``predict_next``, ``score``.

Each resolves the effective settings (see :mod:`nextword._api.settings`), loads the backend's model
once (later calls with the same settings reuse it) and attaches the settings to the result.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any, Literal, overload

from nextword._api.settings import Resolved, decoding_from, resolve
from nextword._contract.protocol import Generator
from nextword._contract.spec import BackendSpec
from nextword._plugins.registry import get_backend
from nextword._types.decoding_config import DecodingConfig
from nextword._types.results import Generation, Prediction, Score, Settings
from nextword._types.streams import GenerationStream
from nextword._words.complete import CompleteMode, predict_or_complete
from nextword._words.search import DEFAULT_MAX_TOKENS
from nextword._words.typing_session import TypingSession
from nextword.errors import InvalidInput, ModelLoadError, NextwordError

__all__ = ["generate", "load", "loaded", "predict_next", "score", "stream", "typing_session", "unload"]

_Key = tuple[BackendSpec, str, str]

# Keyed by the BackendSpec object too, so a backend re-registered by another plugin never gets
# a generator that the previous one loaded; and by the canonical path of a model that is a file
# or folder, so equivalent paths share one copy.
_CACHE: dict[_Key, Generator] = {}
# Guards _CACHE and _LOADING only; it is never held while a model loads, so calls on models
# already loaded never wait for another model's load.
_LOCK = threading.Lock()
# One lock per model being loaded: concurrent loads of the same model wait for the first one.
_LOADING: dict[_Key, threading.Lock] = {}


def load(backend: str | None = None, model: str | os.PathLike[str] | None = None, **options: Any) -> Generator:
    """Load ``model`` on ``backend`` (both resolved from settings when None) and return a
    reusable :class:`~nextword._contract.protocol.Generator`.

    ``options`` are the backend's load options (e.g. ``device``, ``dtype``, ``threads`` for hf).
    A model already loaded with the same backend, model and options is returned as is.
    """
    generator, _ = _load(resolve(backend, model, options))
    return generator


def loaded() -> list[Generator]:
    """The generators currently cached (a generator closed by its user is no longer listed)."""
    with _LOCK:
        _drop_closed()
        return list(_CACHE.values())


def unload() -> None:
    """Close and forget every cached generator."""
    with _LOCK:
        generators = list(_CACHE.values())
        _CACHE.clear()
    for generator in generators:
        generator.close()


@overload
def generate(
    prompt: str,
    *,
    backend: str | None = ...,
    model: str | os.PathLike[str] | None = ...,
    config: DecodingConfig | None = ...,
    options: Mapping[str, Any] | None = ...,
    **decoding: Any,
) -> Generation: ...


@overload
def generate(
    prompt: Sequence[str],
    *,
    backend: str | None = ...,
    model: str | os.PathLike[str] | None = ...,
    config: DecodingConfig | None = ...,
    options: Mapping[str, Any] | None = ...,
    **decoding: Any,
) -> list[Generation]: ...


def generate(
    prompt: str | Sequence[str],
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    config: DecodingConfig | None = None,
    options: Mapping[str, Any] | None = None,
    **decoding: Any,
) -> Generation | list[Generation]:
    """Continue a prompt, or each prompt of a list (a batch).

    ``decoding`` takes any :class:`~nextword._types.decoding_config.DecodingConfig` field (``max_new_tokens``,
    ``max_length``, ``do_sample``, ``temperature``, ``top_k``, ``top_p``, ``no_repeat_ngram_size``,
    ``num_return_sequences``, ``stop``, ``seed``, ...). Returns a
    :class:`~nextword._types.results.Generation` (a list of them for a list of prompts) with the text,
    token ids, finish reason, token counts and the effective settings.
    """
    generator, cfg, settings = _prepare(backend, model, options, config, decoding)
    result = generator.generate(prompt, cfg)
    if isinstance(result, list):
        return [dataclasses.replace(r, settings=settings) for r in result]
    return dataclasses.replace(result, settings=settings)


def stream(
    prompt: str,
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    config: DecodingConfig | None = None,
    options: Mapping[str, Any] | None = None,
    **decoding: Any,
) -> GenerationStream:
    """Like :func:`generate` for one prompt, but yields text chunks as they are produced.

    Chunks never split a character and join to exactly the text :func:`generate` returns.
    After the loop, ``.result`` holds the full :class:`~nextword._types.results.Generation`.
    """
    generator, cfg, settings = _prepare(backend, model, options, config, decoding)
    return GenerationStream(generator.stream(prompt, cfg), settings)


def predict_next(
    prompt: str,
    k: int = 5,
    *,
    unit: Literal["word", "token"] = "word",
    complete: CompleteMode = "auto",
    beam_width: int | None = None,
    min_prob: float = 0.0,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Prediction:
    """The ``k`` most likely next words (or tokens, with ``unit="token"``) after ``prompt``, with
    probabilities, most likely first.

    Word probabilities are exact products of token probabilities along each word's tokens, up to
    the search bounds ``beam_width`` and ``min_prob`` (see :func:`nextword._words.search.predict_words`);
    the probability mass not explored is reported as ``unexplored_mass``. Works on every backend
    that provides next-token logits.

    A prompt that ends inside a word ("I love ca") gets the completions of that word (token
    healing; see :func:`nextword._words.complete.predict_or_complete`): each candidate is the whole word
    with ``remaining`` set to what is still to type, its probability conditioned on the word
    starting with the typed characters (``Prediction.typed``). ``complete`` chooses the reading:
    ``"word"`` (complete the word), ``"next"`` (the next whole word) or ``"auto"``.
    """
    generator, settings = _load(resolve(backend, model, options))
    if unit == "word":
        prediction = predict_or_complete(
            generator, prompt, k, complete=complete, beam_width=beam_width, min_prob=min_prob
        )
    elif unit == "token":
        if beam_width is not None or min_prob:
            raise InvalidInput("beam_width and min_prob bound the word search; they do not apply to unit='token'")
        if complete != "auto":
            raise InvalidInput("complete applies to word predictions; it does not apply to unit='token'")
        prediction = generator.predict_next(prompt, k, unit="token")
    else:
        raise InvalidInput(f"unit must be 'word' or 'token', got {unit!r}")
    return dataclasses.replace(prediction, settings=settings)


def typing_session(
    k: int = 5,
    *,
    complete: CompleteMode = "auto",
    beam_width: int | None = None,
    min_prob: float = 0.0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    text: str = "",
    prefetch: bool = False,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> TypingSession:
    """A typing session (:class:`~nextword._words.typing_session.TypingSession`) on the model the
    settings resolve to (loaded once, as :func:`predict_next` loads it): its ``suggestions()``
    after each edit are what :func:`predict_next` returns for the text with these options,
    settings included."""
    generator, settings = _load(resolve(backend, model, options))
    return TypingSession(
        generator,
        k=k,
        complete=complete,
        beam_width=beam_width,
        min_prob=min_prob,
        max_tokens=max_tokens,
        text=text,
        prefetch=prefetch,
        settings=settings,
    )


def score(
    text: str,
    *,
    backend: str | None = None,
    model: str | os.PathLike[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> Score:
    """Per-token and total log-likelihood of ``text``, and its perplexity."""
    generator, settings = _load(resolve(backend, model, options))
    return dataclasses.replace(generator.score(text), settings=settings)


def _prepare(
    backend: str | None,
    model: str | os.PathLike[str] | None,
    options: Mapping[str, Any] | None,
    config: DecodingConfig | None,
    decoding: dict[str, Any],
) -> tuple[Generator, DecodingConfig, Settings]:
    resolved = resolve(backend, model, options, decoding)
    cfg, dec_sources = decoding_from(resolved, config, decoding)
    generator, settings = _load(resolved)
    sources = {k: v for k, v in settings.sources.items() if not k.startswith("decoding.")}
    sources.update(dec_sources)
    return generator, cfg, dataclasses.replace(settings, decoding=cfg, sources=sources)


def effective_settings(resolved: Resolved, spec: BackendSpec) -> Settings:
    """What a load with ``resolved`` settings on backend ``spec`` runs with: the model (the
    backend's default when none is set), the options validated, converted and completed with
    their defaults, and where each value came from. :func:`load` and ``nextword config`` both
    use it, so what the command prints is what a load does.

    Raises :class:`~nextword.errors.InvalidConfig` for an unknown option or a bad value.
    """
    sources = dict(resolved.sources)
    model = resolved.model
    if model is None:
        model = spec.default_model
        sources["model"] = f"default of the {spec.name!r} backend"
    options = spec.validate_options(resolved.options)
    for name, opt in spec.options.items():
        if name not in options and opt.default is not None:
            options[name] = opt.default
            sources.setdefault(f"options.{name}", "default")
    return Settings(backend=spec.name, model=model, options=options, sources=sources)


def _load(resolved: Resolved) -> tuple[Generator, Settings]:
    spec = get_backend(resolved.backend)
    settings = effective_settings(resolved, spec)
    model, options = settings.model, dict(settings.options)
    key = (spec, _canonical(model), repr(sorted(options.items())))
    generator = _cached_load(key, spec, model, options)
    return generator, dataclasses.replace(settings, options=spec.shown_options(settings.options))


def _cached_load(key: _Key, spec: BackendSpec, model: str, options: dict[str, Any]) -> Generator:
    """The cached generator for ``key``, loading it (once, even when asked from many threads)."""
    with _LOCK:
        _drop_closed()
        generator = _CACHE.get(key)
        if generator is not None:
            return generator
        loading = _LOADING.setdefault(key, threading.Lock())
    try:
        with loading:
            with _LOCK:
                generator = _CACHE.get(key)
            if generator is not None:
                return generator
            generator = _load_model(spec, model, options)
            with _LOCK:
                _CACHE[key] = generator
            return generator
    finally:
        with _LOCK:
            if _LOADING.get(key) is loading and not loading.locked():
                del _LOADING[key]


def _load_model(spec: BackendSpec, model: str, options: dict[str, Any]) -> Generator:
    try:
        generator = spec.load(model, **options)
    except (NextwordError, KeyboardInterrupt):
        raise
    except BaseException as exc:  # a backend's bug, or even its sys.exit(), is a load failure
        what = f"called sys.exit({exc.code!r})" if isinstance(exc, SystemExit) else f"{type(exc).__name__}: {exc}"
        raise ModelLoadError(f"the {spec.name!r} backend could not load model {model!r}: {what}") from exc
    if not isinstance(generator, Generator):
        raise ModelLoadError(
            f"the {spec.name!r} backend returned {type(generator).__name__}, which does not "
            "implement the nextword.Generator protocol"
        )
    try:
        spec.check_generator(generator)
    except ModelLoadError:
        generator.close()
        raise
    return generator


def _close_at_exit() -> None:
    """Close the cached generators while the interpreter is still whole: engines finalized during
    its teardown (llama-cpp-python's ``Llama.__del__``) print tracebacks."""
    with contextlib.suppress(Exception):
        unload()


atexit.register(_close_at_exit)


def _canonical(model: str) -> str:
    """The real path of a model that names an existing file or folder (relative, absolute and
    symlinked spellings agree); anything else (a hub id) as given."""
    try:
        path = os.path.expanduser(model)
        if os.path.exists(path):
            return os.path.realpath(path)
    except (OSError, ValueError):  # e.g. a NUL character: not a path
        pass
    return model


def _drop_closed() -> None:
    """Forget cached generators that their user closed (call with ``_LOCK`` held)."""
    for key in [k for k, g in _CACHE.items() if g.closed]:
        del _CACHE[key]
