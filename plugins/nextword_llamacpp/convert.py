"""Convert a local Hugging Face GPT-2 checkpoint to GGUF, quantize it, and check the result.

:func:`convert` writes a GGUF file that llama.cpp runs as architecture ``gpt2``: the model's
hyper-parameters, its byte-level BPE tokenizer (taken from the checkpoint's own tokenizer files, so
a model with a custom vocabulary converts too) and its tensors under llama.cpp's names.
``f32``, ``f16``, ``q8_0`` and ``q4_0`` are written directly with the ``gguf`` package; the K-quants
(``q4_k_m``, ``q5_k_m``, ``q6_k``) are made by llama.cpp's own quantizer from an F32 intermediate.

:func:`verify` runs the same token ids through transformers (float32) and through llama.cpp on the
GGUF file and reports how far apart the two next-token distributions are.

Heavy dependencies (``gguf``, ``llama_cpp``, ``torch``, ``transformers``) are imported only inside
the functions that need them.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from nextword.decoding.processors import log_softmax
from nextword.errors import ContextLengthExceeded, InvalidConfig, InvalidInput, ModelLoadError

if TYPE_CHECKING:
    import gguf

__all__ = ["GGUF_TYPES", "VerifyReport", "convert", "verify"]

logger = logging.getLogger(__name__)

#: The output types :func:`convert` can write, in order of decreasing size.
GGUF_TYPES: tuple[str, ...] = ("f32", "f16", "q8_0", "q4_0", "q4_k_m", "q5_k_m", "q6_k")

# Written by this module with gguf-py.
_DIRECT_TYPES = ("f32", "f16", "q8_0", "q4_0")
# Made by llama.cpp's quantizer: our type name -> name of the llama_ftype constant in llama_cpp.
_LLAMA_QUANT_FTYPES = {
    "q4_k_m": "LLAMA_FTYPE_MOSTLY_Q4_K_M",
    "q5_k_m": "LLAMA_FTYPE_MOSTLY_Q5_K_M",
    "q6_k": "LLAMA_FTYPE_MOSTLY_Q6_K",
}
# HF GPT-2 activations that llama.cpp's gpt2 graph (tanh-approximated GELU) reproduces.
_GELU_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast", "gelu")
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_DEFAULT_PROBES = (
    "I love cats because they are soft and warm.",
    "The quick brown fox jumps over the lazy dog.",
    "In 1969, two astronauts walked on the Moon while a third orbited above.",
    "def add(a, b):\n    return a + b\n",
)


# --------------------------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------------------------


def convert(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    type: str = "f16",
    progress: bool = False,
) -> Path:
    """Convert the Hugging Face GPT-2 folder ``src`` into the GGUF file ``out`` of type ``type``.

    ``type`` is one of :data:`GGUF_TYPES` (case-insensitive). If ``out`` is an existing folder the
    file is written inside it as ``<src folder name>.<TYPE>.gguf``. The output appears only when it
    is complete: everything is written to a temporary file in the destination folder that replaces
    ``out`` at the very end, and every temporary file is removed on any failure, including
    ``KeyboardInterrupt``. An existing ``out`` is left untouched unless the conversion succeeds.

    Returns the path of the written file.

    Raises:
        InvalidConfig: ``type`` is not one of :data:`GGUF_TYPES`, or the output folder is missing.
        ModelLoadError: ``src`` is missing, lacks a config, weights or tokenizer, is not a GPT-2
            model, has a shape or option llama.cpp's gpt2 graph cannot run, or a K-quant was asked
            for and llama.cpp's quantizer is unavailable or fails.
    """
    kind = _check_type(type)
    src_dir = Path(src)
    model = _read_model(src_dir)
    out_path = _resolve_out(Path(out), src_dir, kind)
    llama_cpp = _import_llama_cpp("quantize to " + kind) if kind in _LLAMA_QUANT_FTYPES else None

    if out_path.is_dir():
        raise InvalidConfig(f"cannot write {str(out_path)!r}: a folder of that name exists")
    try:
        return _write_atomically(model, out_path, kind, llama_cpp, progress)
    except OSError as exc:
        raise ModelLoadError(f"could not write {str(out_path)!r}: {exc.strerror or exc}") from exc


def _write_atomically(model: Any, out_path: Path, kind: str, llama_cpp: Any, progress: bool) -> Path:
    """Write the GGUF to a temp file beside ``out_path``, then move it into place; the temp
    files are removed on any failure."""
    tmp_out = _make_temp(out_path, "")
    try:
        if llama_cpp is None:
            _write_gguf(model, tmp_out, kind, progress=progress, desc=f"Writing {kind.upper()} GGUF")
        else:
            tmp_f32 = _make_temp(out_path, ".f32")
            try:
                _write_gguf(model, tmp_f32, "f32", progress=progress, desc="Writing F32 intermediate")
                _llama_quantize(llama_cpp, tmp_f32, tmp_out, kind, progress=progress)
            finally:
                tmp_f32.unlink(missing_ok=True)
        os.replace(tmp_out, out_path)
    except BaseException:
        tmp_out.unlink(missing_ok=True)
        raise
    return out_path


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
    llama_cpp = _import_llama_cpp("verify a GGUF file")
    try:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError as exc:
        raise ModelLoadError(f"verify needs torch and transformers ({exc}); install nextword[hf]") from exc
    src_dir = Path(src)
    gguf_file = Path(gguf_path)
    if not gguf_file.is_file():
        raise ModelLoadError(f"GGUF file not found: {gguf_file}")
    texts = list(_DEFAULT_PROBES if probes is None else probes)
    if not texts:
        raise InvalidInput("verify needs at least one probe text")

    try:
        tokenizer = AutoTokenizer.from_pretrained(src_dir)
        hf_model = AutoModelForCausalLM.from_pretrained(src_dir, dtype=torch.float32)
    except Exception as exc:  # transformers raises many types here
        raise ModelLoadError(f"transformers cannot load {src_dir}: {exc}") from exc
    hf_model.eval()
    limit = min(n_ctx, int(getattr(hf_model.config, "n_positions", n_ctx)))

    id_lists: list[list[int]] = []
    for text in texts:
        ids = list(tokenizer.encode(text, add_special_tokens=False)) if text else []
        if not ids:
            raise InvalidInput(f"probe {text!r} tokenizes to no tokens")
        if probes is None:
            ids = ids[:limit]  # the built-in probes adapt to small context windows
        elif len(ids) > limit:
            raise ContextLengthExceeded(
                f"probe of {len(ids)} tokens does not fit the context window of {limit}",
                n_tokens=len(ids),
                limit=limit,
            )
        id_lists.append(ids)

    from nextword_llamacpp.llama_log import captured_llama_log

    with captured_llama_log() as log:
        try:
            llm = llama_cpp.Llama(model_path=str(gguf_file), logits_all=True, n_ctx=limit, verbose=False)
        except Exception as exc:  # llama-cpp-python raises ValueError/RuntimeError
            raise ModelLoadError(f"llama.cpp cannot load {gguf_file}: {exc}{log.detail()}") from exc
    try:
        if llm.n_vocab() != hf_model.config.vocab_size:
            raise ModelLoadError(
                f"vocabulary sizes differ: GGUF has {llm.n_vocab()}, transformers has {hf_model.config.vocab_size}"
            )
        stats = _DistributionStats()
        for ids in id_lists:
            with torch.no_grad():
                hf_logits = hf_model(torch.tensor([ids])).logits[0].double().numpy()
            llm.reset()
            llm.eval(ids)
            gguf_logits = np.array(llm.scores[: len(ids)], dtype=np.float64)
            stats.add(hf_logits, gguf_logits)
    finally:
        llm.close()
    return stats.report()


# --------------------------------------------------------------------------------------------
# reading the checkpoint
# --------------------------------------------------------------------------------------------


class _TensorReader(Protocol):
    """Lazy access to the tensors of one checkpoint file."""

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        ...

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key``, without reading its data."""
        ...

    def load(self, key: str) -> np.ndarray:
        """Tensor ``key`` as a float32 array."""
        ...


class _SafetensorsReader:
    """Reads a ``.safetensors`` file with numpy only (no torch), one tensor at a time."""

    _DTYPES = {
        "F64": "<f8",
        "F32": "<f4",
        "F16": "<f2",
        "BF16": "<u2",
        "I64": "<i8",
        "I32": "<i4",
        "I16": "<i2",
        "I8": "i1",
        "U8": "u1",
        "BOOL": "?",
    }

    def __init__(self, path: Path) -> None:
        """Parse the header of ``path``; raise ModelLoadError if it is not a safetensors file."""
        self.path = path
        try:
            with path.open("rb") as f:
                n = int.from_bytes(f.read(8), "little")
                if not 0 < n <= 100_000_000:
                    raise ValueError(f"implausible header length {n}")
                header = json.loads(f.read(n))
            header.pop("__metadata__", None)
            self._data_start = 8 + n
            self._entries: dict[str, dict[str, Any]] = header
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"cannot read safetensors file {path}: {exc}") from exc

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        return self._entries.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key`` as recorded in the header."""
        return tuple(int(d) for d in self._entries[key]["shape"])

    def load(self, key: str) -> np.ndarray:
        """Read tensor ``key`` from disk and return it as float32 (BF16 is widened exactly)."""
        entry = self._entries[key]
        dtype = entry["dtype"]
        if dtype not in self._DTYPES:
            raise ModelLoadError(f"{self.path}: tensor {key} has unsupported dtype {dtype}")
        begin, end = (int(x) for x in entry["data_offsets"])
        with self.path.open("rb") as f:
            f.seek(self._data_start + begin)
            raw = f.read(end - begin)
        if len(raw) != end - begin:
            raise ModelLoadError(f"{self.path} is truncated (tensor {key})")
        arr = np.frombuffer(raw, dtype=self._DTYPES[dtype])
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        return arr.astype(np.float32).reshape(self.shape(key))


class _TorchReader:
    """Reads a ``pytorch_model.bin`` file through ``torch.load(weights_only=True)``."""

    def __init__(self, path: Path) -> None:
        """Open ``path`` memory-mapped; raise ModelLoadError if torch is missing or it is unreadable."""
        try:
            import torch
        except ImportError as exc:
            raise ModelLoadError(
                f"{path.name} is a PyTorch pickle and reading it needs torch; install torch or "
                "save the model as safetensors"
            ) from exc
        try:
            state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except Exception as exc:  # torch raises RuntimeError, UnpicklingError, ...
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        if not isinstance(state, dict):
            raise ModelLoadError(f"{path} does not hold a state dict")
        self._state: dict[str, Any] = state

    def keys(self) -> Iterable[str]:
        """The tensor names stored in the file."""
        return self._state.keys()

    def shape(self, key: str) -> tuple[int, ...]:
        """The shape of tensor ``key``."""
        return tuple(int(d) for d in self._state[key].shape)

    def load(self, key: str) -> np.ndarray:
        """Tensor ``key`` as float32."""
        return self._state[key].float().numpy()


@dataclass(frozen=True)
class _Vocab:
    """A GPT-2 style byte-level BPE vocabulary, laid out for GGUF."""

    tokens: list[str]
    token_types: list[int]
    merges: list[str]
    bos_id: int | None
    eos_id: int | None
    pad_id: int | None
    add_bos: bool


@dataclass(frozen=True)
class _TensorPlan:
    """One output tensor: where it comes from and how it is written."""

    name: str
    source: str
    reader: _TensorReader
    shape: tuple[int, ...]  # numpy shape as written (rows last-major, after any transpose)
    transpose: bool


@dataclass(frozen=True)
class _Model:
    """Everything read from the source folder that the writer needs."""

    name: str
    context_length: int
    n_embd: int
    n_ff: int
    n_layer: int
    n_head: int
    layer_norm_eps: float
    vocab: _Vocab
    tensors: list[_TensorPlan]


def _read_model(src: Path) -> _Model:
    """Read and validate config, weights (headers only) and tokenizer of the folder ``src``."""
    if not src.exists():
        raise ModelLoadError(f"model folder not found: {src}")
    if not src.is_dir():
        raise ModelLoadError(f"not a folder: {src} (expected a Hugging Face model folder)")
    config_path = src / "config.json"
    if not config_path.is_file():
        raise ModelLoadError(f"{src} has no config.json; is it a Hugging Face model folder?")
    config = _read_json(config_path)
    model_type = config.get("model_type")
    if model_type != "gpt2":
        raise ModelLoadError(f"cannot convert model_type {model_type!r}: nextword's converter supports gpt2")
    _check_gpt2_options(config)

    try:
        n_embd = int(config["n_embd"])
        n_layer = int(config["n_layer"])
        n_head = int(config["n_head"])
        n_positions = int(config["n_positions"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{config_path} lacks a valid GPT-2 field: {exc}") from exc
    n_ff = int(config.get("n_inner") or 4 * n_embd)
    eps = float(config.get("layer_norm_epsilon", 1e-5))
    # The position table has n_positions rows; llama.cpp checks it against the context length.
    context_length = n_positions
    if n_head <= 0 or n_embd % n_head:
        raise ModelLoadError(f"n_embd={n_embd} is not divisible by n_head={n_head}")

    readers = _open_weights(src)
    tensors = _plan_tensors(readers, n_layer, n_embd, n_ff, n_positions)
    n_vocab = tensors[0].shape[0]  # token_embd rows
    vocab = _read_vocab(src, config, n_vocab)
    return _Model(
        name=src.resolve().name,
        context_length=context_length,
        n_embd=n_embd,
        n_ff=n_ff,
        n_layer=n_layer,
        n_head=n_head,
        layer_norm_eps=eps,
        vocab=vocab,
        tensors=tensors,
    )


def _check_gpt2_options(config: dict[str, Any]) -> None:
    """Reject GPT-2 variants whose arithmetic llama.cpp's gpt2 graph does not reproduce."""
    activation = config.get("activation_function", "gelu_new")
    if activation not in _GELU_ACTIVATIONS:
        raise ModelLoadError(
            f"cannot convert a GPT-2 with activation_function={activation!r}: llama.cpp's gpt2 "
            f"graph uses GELU ({', '.join(_GELU_ACTIVATIONS)})"
        )
    if config.get("scale_attn_by_inverse_layer_idx"):
        raise ModelLoadError(
            "cannot convert a GPT-2 with scale_attn_by_inverse_layer_idx=true: llama.cpp's gpt2 "
            "graph does not scale attention by layer"
        )
    if config.get("scale_attn_weights", True) is False:
        raise ModelLoadError(
            "cannot convert a GPT-2 with scale_attn_weights=false: llama.cpp's gpt2 graph always "
            "scales attention by 1/sqrt(head_dim)"
        )
    if config.get("add_cross_attention"):
        raise ModelLoadError("cannot convert a GPT-2 with cross-attention layers")


def _read_json(path: Path) -> dict[str, Any]:
    """Parse the JSON object in ``path``; raise ModelLoadError if it is unreadable or not an object."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} does not hold a JSON object")
    return data


def _open_weights(src: Path) -> dict[str, _TensorReader]:
    """Map every tensor name of the checkpoint in ``src`` to the reader of the file holding it."""
    found = [name for name in _WEIGHT_FILES if (src / name).is_file()]
    if not found:
        raise ModelLoadError(f"{src} has no weights: expected one of {', '.join(_WEIGHT_FILES)}")
    name = found[0]
    if name.endswith(".index.json"):
        index = _read_json(src / name)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelLoadError(f"{src / name} has no weight_map")
        files = sorted(set(weight_map.values()))
    else:
        files = [name]
    by_key: dict[str, _TensorReader] = {}
    for file_name in files:
        path = src / file_name
        if not path.is_file():
            raise ModelLoadError(f"weight shard listed in the index is missing: {path}")
        reader: _TensorReader = _SafetensorsReader(path) if file_name.endswith(".safetensors") else _TorchReader(path)
        for key in reader.keys():
            by_key[key] = reader
    return by_key


def _plan_tensors(
    readers: dict[str, _TensorReader], n_layer: int, n_embd: int, n_ff: int, n_positions: int
) -> list[_TensorPlan]:
    """List the GGUF tensors to write, mapped from HF names and checked against the config.

    HF GPT-2 stores its linear layers as ``Conv1D`` with weights shaped (in, out); llama.cpp wants
    (out, in) in numpy order, so those are transposed. The causal-mask buffers ``attn.bias`` and
    ``attn.masked_bias`` are not weights and are skipped. ``output.weight`` is always written, from
    ``lm_head.weight`` when the checkpoint has one and from the tied token embedding otherwise.
    """
    keys = {_strip_prefix(k): k for k in readers}
    wte = keys.get("wte.weight")
    if wte is None:
        raise ModelLoadError("the checkpoint has no token embedding (wte.weight)")
    n_vocab = readers[wte].shape(wte)[0]

    # (gguf name, HF name, HF shape, transpose)
    wanted: list[tuple[str, str, tuple[int, ...], bool]] = [
        ("token_embd.weight", "wte.weight", (n_vocab, n_embd), False),
        ("position_embd.weight", "wpe.weight", (n_positions, n_embd), False),
    ]
    for i in range(n_layer):
        h, b = f"h.{i}.", f"blk.{i}."
        wanted += [
            (b + "attn_norm.weight", h + "ln_1.weight", (n_embd,), False),
            (b + "attn_norm.bias", h + "ln_1.bias", (n_embd,), False),
            (b + "attn_qkv.weight", h + "attn.c_attn.weight", (n_embd, 3 * n_embd), True),
            (b + "attn_qkv.bias", h + "attn.c_attn.bias", (3 * n_embd,), False),
            (b + "attn_output.weight", h + "attn.c_proj.weight", (n_embd, n_embd), True),
            (b + "attn_output.bias", h + "attn.c_proj.bias", (n_embd,), False),
            (b + "ffn_norm.weight", h + "ln_2.weight", (n_embd,), False),
            (b + "ffn_norm.bias", h + "ln_2.bias", (n_embd,), False),
            (b + "ffn_up.weight", h + "mlp.c_fc.weight", (n_embd, n_ff), True),
            (b + "ffn_up.bias", h + "mlp.c_fc.bias", (n_ff,), False),
            (b + "ffn_down.weight", h + "mlp.c_proj.weight", (n_ff, n_embd), True),
            (b + "ffn_down.bias", h + "mlp.c_proj.bias", (n_embd,), False),
        ]
    head = "lm_head.weight" if "lm_head.weight" in keys else "wte.weight"
    wanted += [
        ("output_norm.weight", "ln_f.weight", (n_embd,), False),
        ("output_norm.bias", "ln_f.bias", (n_embd,), False),
        ("output.weight", head, (n_vocab, n_embd), False),
    ]

    missing = [hf for _, hf, _, _ in wanted if hf not in keys]
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
        raise ModelLoadError(f"the checkpoint lacks tensors the config calls for: {shown}")
    plans: list[_TensorPlan] = []
    for gguf_name, hf_name, hf_shape, transpose in wanted:
        key = keys[hf_name]
        reader = readers[key]
        shape = reader.shape(key)
        if shape != hf_shape:
            raise ModelLoadError(f"tensor {key} has shape {shape}, but the config implies {hf_shape}")
        out_shape = tuple(reversed(shape)) if transpose else shape
        plans.append(_TensorPlan(gguf_name, key, reader, out_shape, transpose))
    return plans


def _strip_prefix(key: str) -> str:
    """``transformer.h.0.ln_1.weight`` -> ``h.0.ln_1.weight``; other names unchanged."""
    return key.removeprefix("transformer.")


def _read_vocab(src: Path, config: dict[str, Any], n_vocab: int) -> _Vocab:
    """Read the tokenizer of ``src`` (tokenizer.json, else vocab.json + merges.txt) for GGUF.

    Ids without a token (embedding rows past the tokenizer) become ``[PAD<id>]`` of type UNUSED;
    special added tokens are CONTROL, other added tokens USER_DEFINED, the rest NORMAL.
    """
    tok_config = _read_json(src / "tokenizer_config.json") if (src / "tokenizer_config.json").is_file() else {}
    special_map = _read_json(src / "special_tokens_map.json") if (src / "special_tokens_map.json").is_file() else {}
    if (src / "tokenizer.json").is_file():
        id_of, merges, added = _read_tokenizer_json(src / "tokenizer.json")
    elif (src / "vocab.json").is_file() and (src / "merges.txt").is_file():
        id_of, merges, added = _read_vocab_merges(src, tok_config)
    else:
        raise ModelLoadError(f"{src} has no tokenizer: expected tokenizer.json, or vocab.json and merges.txt")

    too_big = [tok for tok, i in id_of.items() if not 0 <= i < n_vocab]
    if too_big:
        raise ModelLoadError(
            f"the tokenizer has ids outside the model's {n_vocab}-row embedding "
            f"(e.g. {too_big[0]!r} = {id_of[too_big[0]]})"
        )
    tokens = [f"[PAD{i}]" for i in range(n_vocab)]
    types = [5] * n_vocab  # gguf.TokenType.UNUSED
    for tok, i in id_of.items():
        tokens[i] = tok
        special = added.get(tok)
        types[i] = 1 if special is None else (3 if special else 4)  # NORMAL / CONTROL / USER_DEFINED

    def special_id(name: str) -> int | None:
        for source in (tok_config, special_map):
            value = source.get(name)
            if isinstance(value, dict):
                value = value.get("content")
            if isinstance(value, str) and value in id_of:
                return id_of[value]
        config_id = config.get(f"{name}_id")
        if isinstance(config_id, int) and 0 <= config_id < n_vocab and config_id in id_of.values():
            return config_id
        return None

    bos, eos, pad = special_id("bos_token"), special_id("eos_token"), special_id("pad_token")
    if eos is None and "<|endoftext|>" in id_of:
        eos = id_of["<|endoftext|>"]
    if bos is None:
        bos = eos
    if eos is None:
        logger.warning("%s: the tokenizer names no EOS token; llama.cpp will assume id 11", src)
    return _Vocab(
        tokens=tokens,
        token_types=types,
        merges=merges,
        bos_id=bos,
        eos_id=eos,
        pad_id=pad,
        add_bos=bool(tok_config.get("add_bos_token", False)),
    )


def _read_tokenizer_json(path: Path) -> tuple[dict[str, int], list[str], dict[str, bool]]:
    """Vocabulary, merges (as ``"a b"``) and added tokens (content -> special) of a tokenizer.json."""
    data = _read_json(path)
    model = data.get("model") or {}
    if model.get("type") != "BPE":
        raise ModelLoadError(f"{path}: the tokenizer is {model.get('type')!r}, not byte-level BPE as GPT-2 needs")
    if "ByteLevel" not in json.dumps(data.get("pre_tokenizer")):
        raise ModelLoadError(f"{path}: the tokenizer has no ByteLevel pre-tokenizer")
    if _adds_prefix_space(data.get("pre_tokenizer")):
        raise ModelLoadError(
            f"{path}: the tokenizer adds a prefix space, which llama.cpp's gpt-2 pre-tokenizer does not do"
        )
    id_of = {str(tok): int(i) for tok, i in (model.get("vocab") or {}).items()}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges") or []]
    added: dict[str, bool] = {}
    for entry in data.get("added_tokens") or []:
        id_of[entry["content"]] = int(entry["id"])
        added[entry["content"]] = bool(entry.get("special", False))
    return id_of, merges, added


def _adds_prefix_space(node: Any) -> bool:
    """True if any ByteLevel pre-tokenizer in the tokenizer.json subtree ``node`` adds a prefix space."""
    if isinstance(node, dict):
        if node.get("type") == "ByteLevel" and node.get("add_prefix_space"):
            return True
        return any(_adds_prefix_space(v) for v in node.values())
    if isinstance(node, list):
        return any(_adds_prefix_space(v) for v in node)
    return False


def _read_vocab_merges(src: Path, tok_config: dict[str, Any]) -> tuple[dict[str, int], list[str], dict[str, bool]]:
    """Vocabulary, merges and added tokens of a slow GPT2Tokenizer (vocab.json + merges.txt)."""
    if tok_config.get("add_prefix_space"):
        raise ModelLoadError(
            f"{src}: the tokenizer adds a prefix space, which llama.cpp's gpt-2 pre-tokenizer does not do"
        )
    id_of = {str(tok): int(i) for tok, i in _read_json(src / "vocab.json").items()}
    merges = [
        line
        for line in (src / "merges.txt").read_text(encoding="utf-8").splitlines()
        if line and not line.startswith("#version")
    ]
    added: dict[str, bool] = {}
    if (src / "added_tokens.json").is_file():
        for tok, i in _read_json(src / "added_tokens.json").items():
            id_of[str(tok)] = int(i)
            added[str(tok)] = False
    for i, entry in (tok_config.get("added_tokens_decoder") or {}).items():
        id_of[entry["content"]] = int(i)
        added[entry["content"]] = bool(entry.get("special", False))
    for name in ("bos_token", "eos_token", "unk_token", "pad_token"):
        value = tok_config.get(name)
        if isinstance(value, dict):
            value = value.get("content")
        if isinstance(value, str) and value in id_of:
            added[value] = True
    return id_of, merges, added


# --------------------------------------------------------------------------------------------
# writing
# --------------------------------------------------------------------------------------------


def _check_type(type_: str) -> str:
    """Normalize ``type_`` to one of :data:`GGUF_TYPES` or raise InvalidConfig listing them."""
    kind = type_.lower() if isinstance(type_, str) else type_
    if kind not in GGUF_TYPES:
        raise InvalidConfig(f"unknown GGUF type {type_!r}: choose one of {', '.join(GGUF_TYPES)}")
    return kind


def _resolve_out(out: Path, src: Path, kind: str) -> Path:
    """The file to write: ``out`` itself, or ``<src name>.<TYPE>.gguf`` inside ``out`` if a folder."""
    if out.is_dir():
        out = out / f"{src.resolve().name}.{kind.upper()}.gguf"
    if not out.parent.is_dir():
        raise InvalidConfig(f"output folder does not exist: {out.parent}")
    return out


def _make_temp(out_path: Path, tag: str) -> Path:
    """Create an empty, uniquely named hidden temp file next to ``out_path`` and return its path.

    The file is created like any other (permissions from the umask), so the final ``os.replace``
    gives the output ordinary permissions.
    """
    while True:
        path = out_path.with_name(f".nwconv{tag}.{secrets.token_hex(6)}.tmp")
        try:
            with path.open("xb"):
                return path
        except FileExistsError:
            continue


def _import_gguf() -> Any:
    """Import gguf-py or raise ModelLoadError saying how to install it."""
    try:
        import gguf
    except ImportError as exc:
        raise ModelLoadError("writing GGUF needs the gguf package; install nextword[llamacpp]") from exc
    return gguf


def _import_llama_cpp(purpose: str) -> Any:
    """Import llama-cpp-python or raise ModelLoadError naming what it was needed for."""
    try:
        import llama_cpp
    except ImportError as exc:
        raise ModelLoadError(f"llama-cpp-python is needed to {purpose} ({exc}); install nextword[llamacpp]") from exc
    return llama_cpp


def _pick_qtype(gg: Any, plan: _TensorPlan, kind: str) -> gguf.GGMLQuantizationType:
    """The GGML type tensor ``plan`` is stored in for output type ``kind`` (direct types only).

    Follows llama.cpp: 1-D tensors, norms and the position embedding stay F32; for q4_0 the output
    layer gets more bits (Q8_0; llama.cpp's own quantizer would pick Q6_K, which gguf-py cannot
    write); a tensor whose rows are not a multiple of the block size falls back to F16.
    """
    qt = gg.GGMLQuantizationType
    if (
        len(plan.shape) < 2
        or plan.name.endswith("_norm.weight")
        or plan.name == "position_embd.weight"
        or not plan.name.endswith(".weight")
        or kind == "f32"
    ):
        return qt.F32
    if kind == "f16":
        return qt.F16
    target = qt.Q8_0 if kind == "q8_0" or plan.name == "output.weight" else qt.Q4_0
    block_size = gg.GGML_QUANT_SIZES[target][0]
    return target if plan.shape[-1] % block_size == 0 else qt.F16


def _file_type(gguf: Any, kind: str) -> int:
    """The ``general.file_type`` (llama_ftype) value of output type ``kind``."""
    ft = gguf.LlamaFileType
    return int(
        {
            "f32": ft.ALL_F32,
            "f16": ft.MOSTLY_F16,
            "q8_0": ft.MOSTLY_Q8_0,
            "q4_0": ft.MOSTLY_Q4_0,
            "q4_k_m": ft.MOSTLY_Q4_K_M,
            "q5_k_m": ft.MOSTLY_Q5_K_M,
            "q6_k": ft.MOSTLY_Q6_K,
        }[kind]
    )


def _write_gguf(model: _Model, path: Path, kind: str, *, progress: bool, desc: str) -> None:
    """Write ``model`` as a complete GGUF file of direct type ``kind`` to ``path``.

    Tensors are streamed: each is read, converted and written before the next is read, so memory
    holds one tensor at a time. ``progress`` shows a tqdm bar, labelled ``desc``, over the tensors.
    """
    gguf = _import_gguf()
    qtypes = [_pick_qtype(gguf, plan, kind) for plan in model.tensors]
    writer = gguf.GGUFWriter(path, arch="gpt2")
    try:
        _add_metadata(gguf, writer, model, kind)
        for plan, qtype in zip(model.tensors, qtypes, strict=True):
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            n_bytes = math.prod(plan.shape) // block_size * type_size
            if qtype in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
                dtype = np.dtype(np.float32 if qtype == gguf.GGMLQuantizationType.F32 else np.float16)
                writer.add_tensor_info(plan.name, plan.shape, dtype, n_bytes, raw_dtype=qtype)
            else:
                byte_shape = gguf.quant_shape_to_byte_shape(plan.shape, qtype)
                writer.add_tensor_info(plan.name, byte_shape, np.dtype(np.uint8), n_bytes, raw_dtype=qtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for plan, qtype in _iter_progress(
            zip(model.tensors, qtypes, strict=True), enabled=progress, total=len(qtypes), desc=desc
        ):
            data = plan.reader.load(plan.source)
            if plan.transpose:
                data = data.T
            data = np.ascontiguousarray(data, dtype=np.float32)
            writer.write_tensor_data(gguf.quants.quantize(data, qtype))
    finally:
        writer.close()


def _add_metadata(gguf: Any, writer: Any, model: _Model, kind: str) -> None:
    """Add the general, gpt2 and tokenizer key/values of ``model`` to ``writer``."""
    writer.add_name(model.name)
    writer.add_file_type(_file_type(gguf, kind))
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    writer.add_context_length(model.context_length)
    writer.add_embedding_length(model.n_embd)
    writer.add_feed_forward_length(model.n_ff)
    writer.add_block_count(model.n_layer)
    writer.add_head_count(model.n_head)
    writer.add_layer_norm_eps(model.layer_norm_eps)

    vocab = model.vocab
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(vocab.tokens)
    writer.add_token_types(vocab.token_types)
    writer.add_token_merges(vocab.merges)
    if vocab.bos_id is not None:
        writer.add_bos_token_id(vocab.bos_id)
    if vocab.eos_id is not None:
        writer.add_eos_token_id(vocab.eos_id)
    if vocab.pad_id is not None:
        writer.add_pad_token_id(vocab.pad_id)
    writer.add_add_bos_token(vocab.add_bos)


def _llama_quantize(llama_cpp: Any, src: Path, dst: Path, kind: str, *, progress: bool) -> None:
    """Quantize the GGUF ``src`` into ``dst`` with llama.cpp's quantizer at K-quant type ``kind``.

    llama.cpp picks the per-tensor mix (the ``_m`` variants give some layers more bits) and falls
    back to a 32-block type, or F16, for tensors whose rows are not a multiple of 256. Its log is
    captured, not printed; on failure the error lines it logged are part of the raised message.
    """
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = getattr(llama_cpp, _LLAMA_QUANT_FTYPES[kind])
    llama_cpp.llama_backend_init()
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=1, desc=f"Quantizing to {kind.upper()} (llama.cpp)", unit="file")
    from nextword_llamacpp.llama_log import captured_llama_log

    try:
        with captured_llama_log() as log:
            rc = llama_cpp.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    if rc != 0:
        raise ModelLoadError(f"llama.cpp could not quantize the model to {kind} (status {rc}){log.detail()}")


def _iter_progress(items: Iterable[Any], *, enabled: bool, total: int, desc: str) -> Iterator[Any]:
    """Yield ``items``, behind a tqdm bar over ``total`` tensors when ``enabled``."""
    if not enabled:
        yield from items
        return
    from tqdm.auto import tqdm

    with tqdm(items, total=total, desc=desc, unit="tensor") as bar:
        yield from bar


# --------------------------------------------------------------------------------------------
# comparison statistics
# --------------------------------------------------------------------------------------------


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
        ref_lp = _row_log_softmax(ref_logits)
        test_lp = _row_log_softmax(test_logits)
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


def _row_log_softmax(logits: np.ndarray) -> np.ndarray:
    """:func:`nextword.decoding.processors.log_softmax` of every row of ``logits``."""
    return np.stack([log_softmax(row) for row in logits])
