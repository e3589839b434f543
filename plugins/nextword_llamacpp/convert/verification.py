"""Checking a converted file: the same token ids through transformers (float32) on the original
checkpoint and through llama.cpp on the GGUF file, every position's next-token distribution compared."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nextword.backend import log_softmax
from nextword.errors import ContextLengthExceeded, InvalidInput, ModelLoadError
from nextword_llamacpp.convert.quantize import import_llama_cpp

__all__ = ["DEFAULT_PROBES", "VerifyReport", "verify"]

#: The probe texts :func:`verify` uses by default.
DEFAULT_PROBES = (
    "I love cats because they are soft and warm.",
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, two astronauts walked on the Moon while a third orbited above.",
    "def add(a, b):\n    return a + b\n",
)


@dataclass(frozen=True)
class VerifyReport:
    """How closely llama.cpp on a GGUF file follows transformers on the original checkpoint.

    All statistics are over every position of every probe (``n_tokens`` positions in all), each
    position comparing the full next-token distribution of the two engines.

    Attributes:
        n_tokens: number of positions compared.
        max_abs_logprob_diff: largest |log p_HF - log p_GGUF| over all positions and the whole vocabulary.
        max_abs_logit_diff: largest |logit_HF - logit_GGUF| over all positions and the whole vocabulary.
        top1_agreement: fraction of positions where both engines rank the same token first.
        mean_kl: mean over positions of KL(HF || GGUF), in nats.
    """

    n_tokens: int
    max_abs_logprob_diff: float
    max_abs_logit_diff: float
    top1_agreement: float
    mean_kl: float

    def __str__(self) -> str:
        """A one-paragraph human summary of the comparison."""
        return (
            f"GGUF vs transformers over {self.n_tokens} tokens: "
            f"top-1 agreement {self.top1_agreement:.1%}, "
            f"mean KL(HF||GGUF) {self.mean_kl:.3g} nats, "
            f"max |Δ log-prob| {self.max_abs_logprob_diff:.3g}, "
            f"max |Δ logit| {self.max_abs_logit_diff:.3g}"
        )


def verify(
    src: str | os.PathLike[str],
    gguf_path: str | os.PathLike[str],
    probes: Sequence[str] | None = None,
    n_ctx: int = 512,
) -> VerifyReport:
    """Compare the next-token distributions of ``src`` (transformers) and ``gguf_path`` (llama.cpp).

    Each probe is tokenized once with the checkpoint's own tokenizer; the same ids go through the
    Hugging Face model in float32 and through llama.cpp (``logits_all=True``), and every position's
    distribution over the full vocabulary is compared. ``probes`` defaults to a few short English
    and code snippets (cut to the context window if needed). ``n_ctx`` is the llama.cpp context
    size, capped at the model's position table.

    Raises:
        ModelLoadError: either model cannot be loaded, a dependency is missing, or the two
            vocabularies differ in size.
        InvalidInput: a probe is empty or tokenizes to no tokens.
        ContextLengthExceeded: a probe given in ``probes`` is longer than the context window.
    """
    llama_cpp = import_llama_cpp("verify a GGUF file")
    torch, tokenizer, hf_model = _load_reference(Path(src))
    gguf_file = Path(gguf_path)
    if not gguf_file.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_file}")
    texts = list(DEFAULT_PROBES if probes is None else probes)
    if not texts:
        raise InvalidInput("verify needs at least one probe text")
    limit = min(n_ctx, int(getattr(hf_model.config, "n_positions", n_ctx)))
    id_lists = [_probe_ids(tokenizer, text, limit, cut=probes is None) for text in texts]

    stats = _DistributionStats()
    with _opened_gguf(llama_cpp, gguf_file, limit) as llm:
        if llm.n_vocab() != hf_model.config.vocab_size:
            raise ModelLoadError(
                f"vocabulary sizes differ: GGUF has {llm.n_vocab()}, transformers has {hf_model.config.vocab_size}"
            )
        for ids in id_lists:
            with torch.no_grad():
                hf_logits = hf_model(torch.tensor([ids])).logits[0].double().numpy()
            llm.reset()
            llm.eval(ids)
            stats.add(hf_logits, np.array(llm.scores[: len(ids)], dtype=np.float64))
    return stats.report()


def _load_reference(src: Path) -> tuple[Any, Any, Any]:
    """torch, and the tokenizer and float32 model of ``src`` through transformers."""
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(f"verify needs torch and transformers ({exc}); install nextword[hf]") from exc
    try:
        tokenizer = AutoTokenizer.from_pretrained(src)
        model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types here
        raise ModelLoadError(f"transformers cannot load {src}: {exc}") from exc
    model.eval()
    return torch, tokenizer, model


def _probe_ids(tokenizer: Any, text: str, limit: int, *, cut: bool) -> list[int]:
    """The token ids of probe ``text`` with the tokenizer's own special tokens (Gemma's ``<bos>``;
    GPT-2 adds none), as the model sees text in use: cut to ``limit`` when ``cut`` (the built-in
    probes adapt to small context windows), otherwise refused when longer."""
    ids = list(tokenizer.encode(text, add_special_tokens=True)) if text else []
    if not ids:
        raise InvalidInput(f"probe {text!r} tokenizes to no tokens")
    if cut:
        return ids[:limit]
    if len(ids) > limit:
        raise ContextLengthExceeded(
            f"probe of {len(ids)} tokens does not fit the context window of {limit}", n_tokens=len(ids), limit=limit
        )
    return ids


@contextmanager
def _opened_gguf(llama_cpp: Any, gguf_file: Path, n_ctx: int) -> Iterator[Any]:
    """The GGUF file loaded by llama.cpp with logits for every position; closed when done."""
    from nextword_llamacpp.llama_log import captured_llama_log

    with captured_llama_log() as log:
        try:
            llm = llama_cpp.Llama(model_path=str(gguf_file), logits_all=True, n_ctx=n_ctx, verbose=False)
        except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError
            raise ModelLoadError(f"llama.cpp cannot load {gguf_file}: {exc}{log.detail()}") from exc
    try:
        yield llm
    finally:
        llm.close()


class _DistributionStats:
    """Accumulates per-position comparisons of two engines' logits."""

    def __init__(self) -> None:
        """Start with no positions."""
        self.n = 0
        self.agree = 0
        self.kl_sum = 0.0
        self.max_logprob = 0.0
        self.max_logit = 0.0

    def add(self, ref_logits: np.ndarray, test_logits: np.ndarray) -> None:
        """Add positions from two (n_positions, n_vocab) logit arrays, reference first."""
        ref_lp = log_softmax(ref_logits)
        test_lp = log_softmax(test_logits)
        self.n += ref_logits.shape[0]
        self.agree += int(np.sum(ref_logits.argmax(-1) == test_logits.argmax(-1)))
        self.kl_sum += float(np.sum(np.exp(ref_lp) * (ref_lp - test_lp)))
        self.max_logprob = max(self.max_logprob, float(np.max(np.abs(ref_lp - test_lp))))
        self.max_logit = max(self.max_logit, float(np.max(np.abs(ref_logits - test_logits))))

    def report(self) -> VerifyReport:
        """The accumulated statistics as a VerifyReport."""
        n = max(self.n, 1)
        return VerifyReport(
            n_tokens=self.n,
            max_abs_logprob_diff=self.max_logprob,
            max_abs_logit_diff=self.max_logit,
            top1_agreement=self.agree / n,
            mean_kl=max(self.kl_sum / n, 0.0),
        )
