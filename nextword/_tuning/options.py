"""``FinetuneOptions``: the hyper-parameters of one fine-tuning run, validated at construction."""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Literal

from nextword.errors import InvalidConfig

__all__ = ["FinetuneOptions"]

Method = Literal["lora", "full"]


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """How to train. Every field is checked when the object is made; a bad value raises
    :class:`~nextword.InvalidConfig` naming the field and what it accepts.

    One optimizer step sees ``batch_size * grad_accumulation`` blocks of ``block_size`` tokens.
    The run lasts ``max_steps`` steps when given, else ``epochs`` passes over the training blocks.
    The learning rate rises linearly from 0 over ``warmup_steps`` (default: a tenth of the run),
    then falls linearly to 0. The held-out loss is measured every ``eval_every`` steps (default:
    about five times per run) and at the end; after ``patience`` evaluations without improvement
    training stops, and the best weights measured are the ones saved.
    """

    method: Method = "lora"
    epochs: float = 1.0
    max_steps: int | None = None
    learning_rate: float | None = None
    """Default: 2e-4 for LoRA, 5e-5 for full fine-tuning."""
    block_size: int = 128
    batch_size: int = 4
    grad_accumulation: int = 1
    warmup_steps: int | None = None
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    validation: float = 0.1
    eval_every: int | None = None
    patience: int | None = 3
    """Evaluations without improvement before stopping; None never stops early."""
    seed: int = 0
    device: str = "auto"
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] | None = None
    """Module names LoRA adapts; default: every linear layer except the output head."""
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.method not in ("lora", "full"):
            raise InvalidConfig(f"method must be 'lora' or 'full', got {self.method!r}")
        _positive_number("epochs", self.epochs)
        _positive_int("max_steps", self.max_steps, allow_none=True)
        if self.learning_rate is not None:
            _positive_number("learning_rate", self.learning_rate)
        _positive_int("block_size", self.block_size, minimum=2)
        _positive_int("batch_size", self.batch_size)
        _positive_int("grad_accumulation", self.grad_accumulation)
        _positive_int("warmup_steps", self.warmup_steps, allow_none=True, minimum=0)
        _number_in("weight_decay", self.weight_decay, 0.0, math.inf)
        _positive_number("max_grad_norm", self.max_grad_norm)
        if not _is_number(self.validation) or not 0.0 < self.validation < 1.0:
            raise InvalidConfig(f"validation must be a fraction in (0, 1), got {self.validation!r}")
        _positive_int("eval_every", self.eval_every, allow_none=True)
        _positive_int("patience", self.patience, allow_none=True)
        _positive_int("seed", self.seed, minimum=0)
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda", "mps") or self.device.startswith("cuda:")
        ):
            raise InvalidConfig(f"device must be auto, cpu, cuda, cuda:N or mps, got {self.device!r}")
        _positive_int("lora_r", self.lora_r)
        _positive_int("lora_alpha", self.lora_alpha)
        _number_in("lora_dropout", self.lora_dropout, 0.0, 1.0, closed_high=False)
        if self.lora_targets is not None and (
            not isinstance(self.lora_targets, tuple)
            or not self.lora_targets
            or not all(isinstance(t, str) and t for t in self.lora_targets)
        ):
            raise InvalidConfig(f"lora_targets must be a non-empty tuple of module names, got {self.lora_targets!r}")
        _positive_int("threads", self.threads, allow_none=True)

    @property
    def lr(self) -> float:
        """The learning rate in effect (the method's default when none was given)."""
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return 2e-4 if self.method == "lora" else 5e-5

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly dict of every field, with the learning rate in effect."""
        out = dataclasses.asdict(self)
        out["learning_rate"] = self.lr
        if self.lora_targets is not None:
            out["lora_targets"] = list(self.lora_targets)
        return out

    def training_fields(self) -> dict[str, Any]:
        """The fields that decide the weights (a resumed run must match them); not ``device``
        or ``threads``."""
        out = self.to_dict()
        out.pop("device")
        out.pop("threads")
        return out


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _positive_number(name: str, value: Any) -> None:
    if not _is_number(value) or value <= 0:
        raise InvalidConfig(f"{name} must be a positive number, got {value!r}")


def _number_in(name: str, value: Any, low: float, high: float, *, closed_high: bool = True) -> None:
    ok = _is_number(value) and low <= value and (value <= high if closed_high else value < high)
    if not ok:
        bound = "]" if closed_high else ")"
        raise InvalidConfig(f"{name} must be in [{low}, {high}{bound}, got {value!r}")


def _positive_int(name: str, value: Any, *, allow_none: bool = False, minimum: int = 1) -> None:
    if value is None and allow_none:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidConfig(f"{name} must be an integer >= {minimum}, got {value!r}")
