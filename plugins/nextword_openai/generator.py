"""``OpenAIGenerator``: a model behind an OpenAI-compatible server, as a nextword generator.

Generation and streaming go to ``/v1/completions`` with every decoding option sent explicitly in
the server's own field names (greedy is ``temperature=0`` plus the server's penalties switched
off), so greedy means greedy on every server. Prediction and scoring use the server's
log-probabilities: the backend declares ``logits=False`` and the server's top-N limit, and the
core's word search and prediction work from those lists.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterator, Sequence
from typing import Any

from nextword import (
    BaseGenerator,
    Candidate,
    Capabilities,
    Completion,
    DecodingConfig,
    InvalidConfig,
    ModelLoadError,
    Prediction,
    Support,
    UnsupportedOption,
)
from nextword.backend import CompleteMode, CompletionStream, TopLogprobs, check_length, encode_text
from nextword_openai.client import Client, ServerError
from nextword_openai.dialects import DIALECTS, Dialect, detect

__all__ = ["OpenAIGenerator"]

_CACHE = 4096


class OpenAIGenerator(BaseGenerator):
    """A model served by an OpenAI-compatible server (``nextword serve``, vLLM, llama.cpp's
    server, llama-cpp-python's server, ...)."""

    backend_name = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str | None = None,
        timeout: float = 60.0,
        max_retries: int = 2,
        server: str | None = None,
        tokenizer: str | None = None,
        context_length: int | None = None,
        settings_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(model, settings_options)
        self._client = Client(base_url, api_key, timeout=timeout, max_retries=max_retries)
        try:
            models = self._client.get("/v1/models")
        except ServerError as exc:
            self._client.close()
            raise ModelLoadError(f"cannot load {model!r} from {base_url}: {exc}") from None
        name = server or detect(models)
        if name not in DIALECTS:
            raise InvalidConfig(f"unknown server kind {name!r}; one of {', '.join(DIALECTS)}")
        self._dialect: Dialect = DIALECTS[name]
        entry = _model_entry(models, model, base_url)
        raw_info = entry.get("nextword")
        info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
        self._info = info
        ctx = context_length or entry.get("max_model_len")
        if not isinstance(ctx, int) or ctx <= 0:
            raise ModelLoadError(
                f"the server at {base_url} does not say how long its context window is; "
                "pass the context_length option (the n_ctx the server runs with)"
            )
        self._context_length = ctx
        self._local = _LocalTokenizer.load(tokenizer) if tokenizer else None
        if self._local is None and self._dialect.tokenize_path is None:
            raise ModelLoadError(
                f"the server at {base_url} has no tokenize endpoint; name a local tokenizer "
                "(tokenizer=PATH to a .gguf file or a Hugging Face tokenizer folder)"
            )
        eos = info.get("eos_token_ids") or (self._local.eos if self._local else [])
        self._eos = frozenset(int(t) for t in eos)
        self._tok_cache: collections.OrderedDict[str, list[int]] = collections.OrderedDict()
        self._detok_cache: collections.OrderedDict[tuple[int, ...], str] = collections.OrderedDict()
        self._piece_ids: dict[str, int | None] = {}
        self._bos_prefix: list[int] | None = None
        self.capabilities = self._capabilities()

    # ---- identity and limits --------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The kind of server this generator talks to (``nextword``, ``vllm``, ...)."""
        return self._dialect.name

    @property
    def context_length(self) -> int:
        return self._context_length

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return self._eos

    @property
    def vocab_size(self) -> int | None:
        size = self._info.get("vocab_size")
        return int(size) if isinstance(size, int) else None

    def _capabilities(self) -> Capabilities:
        d = self._dialect
        options: dict[str, Support] = {"max_new_tokens": Support.NATIVE, "max_length": Support.NATIVE}
        options["do_sample"] = Support.NATIVE
        for option in d.fields:
            options[option] = Support.NATIVE
        served = self._info.get("capabilities", {}).get("options")
        if isinstance(served, dict):  # a nextword server: what its own backend supports
            options = {k: v for k, v in options.items() if served.get(k, "unsupported") != "unsupported"}
        limit = self._info.get("max_logprobs", d.max_logprobs)
        return Capabilities(
            options=options,
            batch=True,
            stream=True,
            predict_next=True,
            score=d.prompt_logprobs,
            logits=False,
            max_logprobs=int(limit) if isinstance(limit, int) else None,
        )

    def close(self) -> None:
        self._client.close()
        if self._local is not None:
            self._local.close()

    # ---- tokens ---------------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        cached = self._tok_cache.get(text)
        if cached is not None:
            return list(cached)
        if self._local is not None:
            ids = self._local.tokenize(text)
        else:
            ids = self._server_tokenize(text)
        _remember(self._tok_cache, text, ids)
        return list(ids)

    def _server_tokenize(self, text: str) -> list[int]:
        path = self._dialect.tokenize_path
        assert path is not None
        if self._dialect.name == "llama-cpp-python":
            return [int(t) for t in self._client.post(path, {"input": text, "model": self.model})["tokens"]]
        if self._dialect.name == "llama.cpp":
            return [int(t) for t in self._client.post(path, {"content": text, "add_special": True})["tokens"]]
        return [int(t) for t in self._client.post(path, {"model": self.model, "prompt": text})["tokens"]]

    def detokenize(self, token_ids: Sequence[int]) -> str:
        key = tuple(int(t) for t in token_ids)
        cached = self._detok_cache.get(key)
        if cached is not None:
            return cached
        if not key:
            return ""
        if self._local is not None:
            text = self._local.detokenize(list(key))
        else:
            path = self._dialect.detokenize_path
            assert path is not None
            data = self._client.post(path, {"model": self.model, "tokens": list(key)})
            text = str(data.get("prompt", data.get("text", data.get("content", ""))))
        _remember(self._detok_cache, key, text)
        return text

    def _piece_id(self, piece: str) -> int | None:
        """The one token id whose text is ``piece`` (None when the text is not one token)."""
        if piece in self._piece_ids:
            return self._piece_ids[piece]
        if self._bos_prefix is None:
            self._bos_prefix = self.tokenize("x")[:-1] if len(self.tokenize("x")) > 1 else []
        found: int | None = None
        if piece:
            ids = self.tokenize(piece)
            if ids[: len(self._bos_prefix)] == self._bos_prefix:
                ids = ids[len(self._bos_prefix) :]
            if len(ids) == 1:
                found = ids[0]
        self._piece_ids[piece] = found
        return found

    # ---- requests -------------------------------------------------------------------------------

    def _prompt_field(self, ids: Sequence[int]) -> list[int] | str:
        if self._dialect.token_prompts:
            return list(ids)
        text = self.detokenize(ids)
        if self.tokenize(text) != list(ids):
            raise UnsupportedOption(
                f"the {self._dialect.name} server takes text prompts only, and these token ids do not "
                "come back from their text; it cannot evaluate them",
                option="token_prompts",
                backend=self.backend,
            )
        return self._text_prompt(text, list(ids))

    def _text_prompt(self, text: str, ids: list[int]) -> str:
        """``text`` as a prompt for a text-only server, after checking that the server reads it as
        ``ids`` (with a local tokenizer the two may differ: llama-cpp-python's server reads
        special-token names in a text as control tokens)."""
        if self._local is not None and self._dialect.tokenize_path is not None:
            if self._server_tokenize(text) != ids:
                raise UnsupportedOption(
                    f"the {self._dialect.name} server reads this text as other tokens than the model's "
                    "tokenizer does (special-token names become control tokens there); it cannot run it",
                    option="prompt",
                    backend=self.backend,
                )
        return text

    def _body(self, prompt: Any, cfg: DecodingConfig, max_tokens: int) -> dict[str, Any]:
        d = self._dialect
        body: dict[str, Any] = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, **d.neutral}
        f = d.fields
        if cfg.sampling:
            body["temperature"] = 1.0 if cfg.temperature is None else cfg.temperature
            for name in ("top_k", "top_p", "min_p", "typical_p"):
                value = getattr(cfg, name)
                if value is not None:
                    body[f[name]] = value
            if cfg.seed is not None:
                body[f["seed"]] = cfg.seed
        else:
            body["temperature"] = 0.0
        if cfg.repetition_penalty != 1.0:
            body[f["repetition_penalty"]] = cfg.repetition_penalty
        if cfg.min_new_tokens:
            body[f["min_new_tokens"]] = cfg.min_new_tokens
        if cfg.no_repeat_ngram_size:
            body[f["no_repeat_ngram_size"]] = cfg.no_repeat_ngram_size
        if cfg.num_return_sequences > 1:
            body[f["num_return_sequences"]] = cfg.num_return_sequences
        if cfg.stop:
            body[f["stop"]] = list(cfg.stop)
        if d.returns_token_ids:
            body["return_token_ids"] = True
        return body

    # ---- generation -----------------------------------------------------------------------------

    def generate_completions(
        self, prompts_ids: Sequence[Sequence[int]], config: DecodingConfig, n_new: Sequence[int]
    ) -> list[list[Completion]]:
        """Each prompt's completions, as the server finished them (it applies stop strings)."""
        return [self._server_completions(list(ids), config, n) for ids, n in zip(prompts_ids, n_new, strict=True)]

    def _server_completions(self, ids: list[int], cfg: DecodingConfig, n_new: int) -> list[Completion]:
        if n_new == 0:
            return [Completion("", (), "length")] * cfg.num_return_sequences
        body = self._body(self._prompt_field(ids), cfg, n_new)
        if not self._dialect.returns_token_ids and cfg.num_return_sequences == 1:
            # No ids from this server: streamed, its chunks are one token each (a few tokens where
            # a character or a possible stop string spans them), which gives the ids back.
            body["stream"] = True
            choices = [self._collect(self._client.stream("/v1/completions", body))]
        else:
            data = self._client.post("/v1/completions", body)
            choices = sorted(data.get("choices", []), key=lambda c: c.get("index", 0))
        if len(choices) != cfg.num_return_sequences:
            raise ServerError(
                f"the server returned {len(choices)} completions, {cfg.num_return_sequences} were asked for"
            )
        return [self._completion(c, ids, cfg) for c in choices]

    def _completion(self, choice: dict[str, Any], prompt_ids: list[int], cfg: DecodingConfig) -> Completion:
        text = str(choice.get("text", ""))
        ids = self._generated_ids(choice, prompt_ids, text)
        reason = choice.get("finish_reason")
        if reason == "length":
            return Completion(text, tuple(ids), "length")
        if ids and ids[-1] in self._eos:
            return Completion(text, tuple(ids), "eos")
        if cfg.stop and not isinstance(choice.get("stop_reason"), int):
            # A stop string ended it (servers that list no end-of-text token leave this ambiguous
            # when the model also ended the text right there: it counts as the stop string).
            return Completion(text, tuple(ids), "stop")
        if self._eos and not self._dialect.returns_token_ids:
            ids.append(min(self._eos))  # the server ended at its end-of-text token without listing it
        return Completion(text, tuple(ids), "eos")

    @staticmethod
    def _collect(events: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """One choice from a stream's events: its text, its chunks and how it ended."""
        choice: dict[str, Any] = {"chunks": []}
        for _ in _read_events(events, choice):
            pass
        choice["text"] = "".join(choice["chunks"])
        return choice

    def _chunk_ids(self, chunk: str) -> list[int]:
        single = self._piece_id(chunk)
        if single is not None:
            return [single]
        ids = self.tokenize(chunk)
        prefix = self._bos_prefix or []
        return ids[len(prefix) :] if ids[: len(prefix)] == prefix else ids

    def _generated_ids(self, choice: dict[str, Any], prompt_ids: list[int], text: str) -> list[int]:
        if isinstance(choice.get("token_ids"), list):
            return [int(t) for t in choice["token_ids"]]
        chunks = choice.get("chunks")
        if isinstance(chunks, list) and "".join(chunks) == text:
            return [t for chunk in chunks for t in self._chunk_ids(chunk)]
        # A server that gives no ids: the text read again after the prompt (the engine's own
        # tokens unless the tokenizer would split the same text otherwise).
        full = self.tokenize(self.detokenize(prompt_ids) + text) if text else list(prompt_ids)
        return full[len(prompt_ids) :] if full[: len(prompt_ids)] == prompt_ids else self.tokenize(text)

    def completion_stream(self, prompt_ids: Sequence[int], config: DecodingConfig, n_new: int) -> CompletionStream:
        """The server's text chunks as they arrive, then the completion they make."""
        ids = list(prompt_ids)
        choice: dict[str, Any] = {"chunks": []}

        def chunks() -> Iterator[str]:
            if n_new == 0:
                return
            body = self._body(self._prompt_field(ids), config, n_new)
            body["stream"] = True
            yield from _read_events(self._client.stream("/v1/completions", body), choice)

        def finish() -> Completion:
            if n_new == 0:
                return Completion("", (), "length")
            return self._completion({**choice, "text": "".join(choice["chunks"])}, ids, config)

        return CompletionStream(chunks(), finish)

    # ---- log-probabilities ----------------------------------------------------------------------

    def next_token_logits(self, token_ids: Sequence[int]) -> Any:
        raise UnsupportedOption(
            f"the {self._dialect.name} server returns only top log-probabilities, not full logits; "
            "use predict_next or nextword._decoding.logprobs.top_logprobs",
            option="logits",
            backend=self.backend,
        )

    def next_token_top_logprobs(self, token_ids: Sequence[int], n: int) -> TopLogprobs:
        self.capabilities.check_logprobs(n, self.backend)
        ids = list(token_ids)
        check_length(len(ids), 1, self.context_length)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self._prompt_field(ids),
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": n,
            **self._dialect.neutral,
        }
        if self._dialect.token_id_keys:
            body["return_tokens_as_token_ids"] = True
        data = self._client.post("/v1/completions", body)
        try:
            top = data["choices"][0]["logprobs"]["top_logprobs"][0]
        except (KeyError, IndexError, TypeError):
            raise ServerError("the server returned no log-probabilities") from None
        pairs = self._pairs(top)
        pairs.sort(key=lambda p: (-p[1], p[0]))
        return TopLogprobs.from_pairs(pairs[:n])

    def _pairs(self, top: dict[str, float]) -> list[tuple[int, float]]:
        pairs: dict[int, float] = {}
        for key, lp in top.items():
            if key.startswith("token_id:"):
                token: int | None = int(key[len("token_id:") :])
            else:
                token = self._piece_id(key)
            if token is not None and math.isfinite(float(lp)) and token not in pairs:
                pairs[token] = float(lp)
        return list(pairs.items())

    def token_logprobs(self, token_ids: Sequence[int]) -> list[float]:
        ids = list(token_ids)
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": self._prompt_field(ids),
            "max_tokens": 1,
            "temperature": 0.0,
            "echo": True,
            "logprobs": 1,
            **self._dialect.neutral,
        }
        data = self._client.post("/v1/completions", body)
        try:
            values = data["choices"][0]["logprobs"]["token_logprobs"]
        except (KeyError, IndexError, TypeError):
            raise ServerError("the server returned no prompt log-probabilities") from None
        # Entries: one per prompt token (the first null), then the generated token.
        if len(values) < len(ids):
            values = [None] * (len(ids) - len(values)) + list(values)  # the server left out a BOS token
        out = values[1 : len(ids)]
        if any(v is None for v in out):
            raise ServerError("the server left out the log-probability of a prompt token")
        return [float(v) for v in out]

    # ---- prediction -----------------------------------------------------------------------------

    def native_word_prediction(self, prompt: str, k: int, complete: CompleteMode) -> Prediction | None:
        """Over ``nextword serve`` the server's own word search answers (from its full
        distribution); elsewhere None: the core's search runs here on the server's top-N lists."""
        if self._dialect.name != "nextword":
            return None
        ids = encode_text(self, prompt)
        check_length(len(ids), 1, self.context_length)
        body = {"model": self.model, "prompt": prompt, "k": k, "complete": complete}
        data = self._client.post("/v1/next_words", body)
        return Prediction(
            prompt=prompt,
            candidates=tuple(
                Candidate(c["text"], tuple(c["token_ids"]), float(c["prob"]), float(c["logprob"]))
                for c in data["candidates"]
            ),
            settings=self.settings,
            unit="word",
            unexplored_mass=float(data["unexplored_mass"]),
        )


def _read_events(events: Iterator[dict[str, Any]], choice: dict[str, Any]) -> Iterator[str]:
    """Yield the text pieces of a stream's events, appending each to ``choice["chunks"]`` and
    recording in ``choice`` how the sequence ended (``finish_reason``, ``stop_reason``,
    ``token_ids``) as the events say it."""
    for event in events:
        for part in event.get("choices", []):
            for key in ("finish_reason", "stop_reason", "token_ids"):
                if part.get(key) is not None:
                    choice[key] = part[key]
            piece = str(part.get("text", ""))
            if piece:
                choice["chunks"].append(piece)
                yield piece


def _model_entry(models: Any, model: str, base_url: str) -> dict[str, Any]:
    try:
        entries = [e for e in models["data"] if isinstance(e, dict)]
    except (KeyError, TypeError):
        raise ModelLoadError(f"{base_url}/models did not list any model") from None
    for entry in entries:
        if entry.get("id") == model:
            return entry
    names = ", ".join(repr(e.get("id")) for e in entries) or "none"
    raise ModelLoadError(f"the server at {base_url} has no model {model!r} (it serves: {names})")


def _remember(cache: collections.OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    if len(cache) > _CACHE:
        cache.popitem(last=False)


class _LocalTokenizer:
    """A tokenizer on this machine for a server that has none (a .gguf file or a Hugging Face
    tokenizer folder); it must be the served model's."""

    def __init__(self, tokenize: Any, detokenize: Any, eos: list[int], close: Any = None) -> None:
        self.tokenize = tokenize
        self.detokenize = detokenize
        self.eos = eos
        self._close = close

    def close(self) -> None:
        """Free the engine behind the tokenizer now (a llama.cpp vocabulary), not at interpreter exit."""
        if self._close is not None:
            self._close()
            self._close = None

    @classmethod
    def load(cls, path: str) -> _LocalTokenizer:
        try:
            if path.endswith(".gguf"):
                import llama_cpp

                llama = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
                return cls(
                    lambda text: llama.tokenize(text.encode("utf-8"), add_bos=True, special=False),
                    lambda ids: llama.detokenize(ids, special=True).decode("utf-8", errors="replace"),
                    [int(llama.token_eos())],
                    llama.close,
                )
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(path)
            eos = [int(tok.eos_token_id)] if tok.eos_token_id is not None else []
            return cls(
                lambda text: list(tok.encode(text, split_special_tokens=True)),
                lambda ids: tok.decode(ids),
                eos,
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load the tokenizer {path!r}: {type(exc).__name__}: {exc}") from None
