"""Registers the ``hf`` backend through nextword's public hooks."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any

from nextword import BackendSpec, Capabilities, DecodingConfig, OptionSpec, Support, hookimpl

DEFAULT_MODEL = "gpt2"

CAPABILITIES = Capabilities(
    options={
        **{name: Support.NATIVE for name in DecodingConfig.field_names()},
        "stop": Support.EMULATED,
    }
)

OPTIONS = {
    "device": OptionSpec(str, "where the model runs: cpu, cuda, cuda:N or auto", default="auto"),
    "dtype": OptionSpec(str, "weight dtype", default="float32", choices=("auto", "float32", "float16", "bfloat16")),
    "threads": OptionSpec(
        int, "CPU threads torch may use (default: torch's, at most one per usable physical core)", minimum=1
    ),
    "cache": OptionSpec(
        str,
        "KV cache of generate(): dynamic, or static (preallocated; much faster on GPUs)",
        default="dynamic",
        choices=("dynamic", "static"),
    ),
    "gguf_cache": OptionSpec(
        str,
        "for a .gguf model loaded in float32: where the model transformers converts it to is kept, so "
        "that the next load of the same file reads it instead of converting again (about 1 GB for a "
        "270M model); 'default' ($NEXTWORD_CACHE_DIR/hf-gguf or the user cache folder), 'off', or a folder",
        default="default",
    ),
    "batching": OptionSpec(
        str,
        "exact: concurrent generations take turns, each prompt alone (bit-identical to a call alone); "
        "fast: concurrent generations and the prompts of a list run as one left-padded batch",
        default="exact",
        choices=("exact", "fast"),
    ),
}


def _check() -> str | None:
    for module in ("torch", "transformers"):
        if importlib.util.find_spec(module) is None:
            return (
                f"{module} is not installed; install it with `pip install torch==2.13.0` then "
                "`pip install 'nextword[hf]'`"
            )
    return None


def _load(model: str, **options: Any) -> Any:
    from nextword_hf.generator import HFGenerator

    return HFGenerator.load(model, spec=SPEC, **options)


#: The backend's one declaration: name, default model, options and capabilities (the
#: generators it loads report them: the spec is passed on to each).
SPEC = BackendSpec(
    name="hf",
    load=_load,
    default_model=DEFAULT_MODEL,
    description="Hugging Face transformers on PyTorch (GPT-2, GPT-1, any causal LM, .gguf via transformers)",
    options=OPTIONS,
    capabilities=CAPABILITIES,
    check=_check,
)


@hookimpl
def register_backends(register: Callable[[BackendSpec], None]) -> None:
    """Register the hf backend."""
    register(SPEC)


def _train(job: Any) -> Any:
    from nextword_hf.training import train

    return train(job)


def _check_training() -> str | None:
    reason = _check()
    if reason is None and importlib.util.find_spec("peft") is None:
        return "peft is not installed (LoRA); pip install 'nextword[hf]'"
    return reason


@hookimpl
def register_trainers(register: Callable[[Any], None]) -> None:
    """Register the hf fine-tuning engine (transformers + peft)."""
    from nextword.backend import TrainerSpec

    register(
        TrainerSpec(
            name="hf",
            train=_train,
            description="PyTorch + transformers, LoRA through peft (merged on save) or full fine-tuning",
            check=_check_training,
        )
    )
