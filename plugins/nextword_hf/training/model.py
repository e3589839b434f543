"""Loading the base model for training, adding LoRA adapters, and saving an ordinary model folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nextword.backend import FinetuneOptions
from nextword.errors import InvalidConfig, ModelLoadError
from nextword_hf.loading import load_pretrained, locate

__all__ = ["load_base", "pick_device", "prepare_model", "save_folder", "trainable_state"]


def pick_device(device: str) -> str:
    """``auto`` becomes ``cuda`` where a GPU is visible, else ``cpu``; a missing GPU is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InvalidConfig(f"device {device!r} was asked for but torch sees no CUDA GPU")
    return device


def load_base(base: str, device: str, gguf_cache: Path | None = None) -> tuple[Any, Any]:
    """(tokenizer, model) of ``base`` in float32 on ``device``, in training mode. A ``.gguf`` base
    is read from (or converted into) ``gguf_cache`` when given (:mod:`nextword_hf.gguf_cache`),
    converted from the file every time when not."""
    import torch

    tokenizer, model = load_pretrained(locate(base), dtype=torch.float32, device=device, gguf_cache=gguf_cache)
    if getattr(model.config, "is_encoder_decoder", False):
        raise ModelLoadError(f"{base!r} is not a causal language model")
    _detach_gguf_quantizer(model, base)
    return tokenizer, model


def _detach_gguf_quantizer(model: Any, base: str) -> None:
    """A model read from a .gguf file keeps transformers' GGUF quantizer attached, which refuses
    training and saving. Where every weight was unpacked to float (transformers' fallback when no
    GGUF matmul kernel is installed, and its loader for most architectures) the model is an
    ordinary dense one: drop the quantizer."""
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    packed = bool(getattr(quantizer, "packed_modules", None))
    if packed or not all(p.is_floating_point() for p in model.parameters()):
        raise ModelLoadError(
            f"{base!r} was loaded with packed quantized weights, which cannot be trained; load it dequantized "
            "(without the `kernels` package) or convert it to a model folder first"
        )
    # transformers' own undoing (quantizer, config entry, the model's is_quantized flag, which
    # Trainer checks); by hand where a version lacks it.
    remove = getattr(quantizer, "remove_quantization_config", None)
    if callable(remove):
        remove(model)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def prepare_model(model: Any, options: FinetuneOptions) -> Any:
    """The model to train: LoRA adapters on ``options.lora_targets`` (default every linear layer
    but the output head) for ``lora``, the model itself with every weight trainable for ``full``."""
    if options.method == "full":
        for param in model.parameters():
            param.requires_grad_(True)
        return model
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as exc:
        raise ModelLoadError(f"LoRA needs peft ({exc}); pip install 'nextword[hf]'") from exc
    targets: Any = list(options.lora_targets) if options.lora_targets else "all-linear"
    config = LoraConfig(
        fan_in_fan_out=_conv1d_layers(model),
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=targets,
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise InvalidConfig(f"LoRA cannot be applied: {exc}") from exc


def _conv1d_layers(model: Any) -> bool:
    """True for models whose layers are transformers' ``Conv1D`` (GPT-2, GPT-1: weights stored
    input-major) rather than ``nn.Linear``: LoRA must then be told ``fan_in_fan_out``."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    modules = list(model.modules())
    linear = any(isinstance(m, torch.nn.Linear) and m is not head for m in modules)
    return not linear and any(isinstance(m, Conv1D) for m in modules)


def trainable_state(model: Any) -> dict[str, Any]:
    """The trainable parameters by name (the tensors themselves, not copies)."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_folder(model: Any, tokenizer: Any, options: FinetuneOptions, out: Path) -> None:
    """Write an ordinary model folder: LoRA merged into the base weights, safetensors, config,
    generation config and the unchanged tokenizer."""
    if options.method == "lora":
        model = model.merge_and_unload()
    model.eval()
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
