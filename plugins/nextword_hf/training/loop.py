"""The training loop: a plain PyTorch loop rather than transformers' Trainer.

Why not Trainer: packed blocks of equal length need no collator or padding; an exact resume must
restore the data order, optimizer, schedule and random state that decide the next step (here
they are a function of the step number plus a small state dict); early stopping keeps the best
weights in memory rather than re-reading checkpoints; Ctrl-C is handled at a step boundary. The
loop does what Trainer's default does for causal LMs: AdamW, linear warm-up then linear decay,
gradient clipping at ``max_grad_norm``, gradient accumulation.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from nextword.backend import FinetuneOptions, TrainingJob
from nextword.errors import TrainingInterrupted
from nextword_hf.training.checkpoint import load_checkpoint, save_checkpoint
from nextword_hf.training.model import trainable_state

__all__ = ["LoopResult", "Schedule", "train_loop", "evaluate"]


class Schedule:
    """Which blocks each optimizer step uses, decided by the seed and the step number alone."""

    def __init__(self, n_blocks: int, options: FinetuneOptions) -> None:
        self.n_blocks = n_blocks
        self.batch = options.batch_size
        self.accum = options.grad_accumulation
        self.seed = options.seed
        self.micro_per_epoch = math.ceil(n_blocks / self.batch)
        if options.max_steps is not None:
            self.total_steps = options.max_steps
        else:
            self.total_steps = max(1, math.ceil(options.epochs * self.micro_per_epoch / self.accum))
        self.warmup = options.warmup_steps if options.warmup_steps is not None else self.total_steps // 10
        self.eval_every = options.eval_every or max(1, self.total_steps // 5)
        self._orders: dict[int, np.ndarray] = {}

    def micro_batches(self, step: int) -> list[np.ndarray]:
        """The block indices of each micro-batch of optimizer step ``step`` (0-based)."""
        out = []
        for micro in range(step * self.accum, (step + 1) * self.accum):
            epoch, index = divmod(micro, self.micro_per_epoch)
            order = self._order(epoch)
            out.append(order[index * self.batch : (index + 1) * self.batch])
        return out

    def passes(self) -> float:
        """How many times the run goes over the training blocks."""
        return self.total_steps * self.accum / self.micro_per_epoch

    def lr_factor(self, step: int) -> float:
        """Linear warm-up over ``warmup`` steps, then linear decay to 0 at the last step."""
        if step < self.warmup:
            return (step + 1) / (self.warmup + 1)
        return max(0.0, (self.total_steps - step) / max(1, self.total_steps - self.warmup))

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            self._orders = {epoch: np.random.default_rng([self.seed, epoch]).permutation(self.n_blocks)}
        return self._orders[epoch]


class LoopResult:
    """What the loop measured."""

    def __init__(self) -> None:
        self.base_loss = math.nan
        self.best_loss = math.inf
        self.best_step = 0
        self.steps = 0
        self.tokens_seen = 0
        self.seconds = 0.0
        self.history: list[dict[str, float]] = []
        self.stopped_early = False


def evaluate(model: Any, blocks: list[list[int]], batch_size: int, device: str) -> float:
    """Mean loss per predicted token over ``blocks`` (full blocks batched, a short last one alone)."""
    import torch

    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    full = [b for b in blocks if len(b) == len(blocks[0])]
    rest = [b for b in blocks if len(b) != len(blocks[0])]
    groups = [full[i : i + batch_size] for i in range(0, len(full), batch_size)] + [[b] for b in rest]
    with torch.no_grad():
        for group in groups:
            ids = torch.tensor(group, device=device)
            loss = model(input_ids=ids, labels=ids).loss.item()
            n = ids.shape[0] * (ids.shape[1] - 1)
            total += loss * n
            count += n
    model.train(was_training)
    return total / count


@contextlib.contextmanager
def _ctrl_c_flag() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C (the loop stops at the next step boundary); a second
    Ctrl-C raises KeyboardInterrupt at once. Only in the main thread: elsewhere the event is
    never set and Ctrl-C behaves as usual."""
    event = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield event
        return
    previous = signal.getsignal(signal.SIGINT)

    def handler(signum: int, frame: Any) -> None:
        event.set()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, handler)
    try:
        yield event
    finally:
        signal.signal(signal.SIGINT, previous)


def train_loop(
    model: Any,
    train_blocks: list[list[int]],
    val_blocks: list[list[int]],
    job: TrainingJob,
    device: str,
    fingerprint: dict[str, Any],
) -> LoopResult:
    """Train ``model`` in place; on return it holds the best weights measured on ``val_blocks``."""
    import torch
    from tqdm.auto import tqdm

    opts = job.options
    schedule = Schedule(len(train_blocks), opts)
    data = torch.tensor(train_blocks, dtype=torch.long)
    params = trainable_state(model)
    optimizer = _optimizer(params, opts)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule.lr_factor)
    result = LoopResult()
    if job.resume:
        best, start, bad_evals = _resume(job, fingerprint, params, optimizer, scheduler, result)
    else:
        result.base_loss = evaluate(model, val_blocks, opts.batch_size, device)
        result.best_loss = result.base_loss
        result.history.append({"step": 0, "loss": result.base_loss})
        best, start, bad_evals = {n: p.detach().clone() for n, p in params.items()}, 0, 0

    model.train()
    bar = tqdm(total=schedule.total_steps, initial=start, disable=not job.progress, unit="step", dynamic_ncols=True)
    step = start
    with _ctrl_c_flag() as stop, bar:
        while step < schedule.total_steps:
            began = time.perf_counter()
            loss_sum, step_tokens = _train_step(model, data, schedule.micro_batches(step), params, device)
            torch.nn.utils.clip_grad_norm_(list(params.values()), opts.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            result.seconds += time.perf_counter() - began
            result.tokens_seen += step_tokens
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", tok_s=f"{result.tokens_seen / max(result.seconds, 1e-9):.0f}")
            if step % schedule.eval_every == 0 or step == schedule.total_steps:
                val = evaluate(model, val_blocks, opts.batch_size, device)
                result.history.append({"step": step, "loss": val})
                if val < result.best_loss:
                    result.best_loss, result.best_step, bad_evals = val, step, 0
                    best = {n: p.detach().clone() for n, p in params.items()}
                else:
                    bad_evals += 1
                bar.set_postfix(loss=f"{loss_sum:.3f}", val=f"{val:.3f}")
                if opts.patience is not None and bad_evals >= opts.patience and step < schedule.total_steps:
                    result.stopped_early = True
                    break
            if job.on_step is not None:
                lr = scheduler.get_last_lr()[0]
                job.on_step({"step": step, "loss": loss_sum, "tokens_seen": result.tokens_seen, "lr": lr})
            if stop.is_set() and step < schedule.total_steps:
                state = _checkpoint_state(fingerprint, step, params, best, optimizer, scheduler, result, bad_evals)
                save_checkpoint(job.checkpoint_dir, state)
                raise TrainingInterrupted(
                    f"interrupted after step {step} of {schedule.total_steps}; checkpoint saved in "
                    f"{job.checkpoint_dir}. Run the same command again with --resume (resume=True) to continue",
                    checkpoint=str(job.checkpoint_dir),
                    step=step,
                )
    result.steps = step
    with torch.no_grad():
        for name, value in best.items():
            params[name].copy_(value)
    return result


def _optimizer(params: dict[str, Any], opts: Any) -> Any:
    """AdamW with weight decay on matrices only (not on biases and norms)."""
    import torch

    decay = [p for p in params.values() if p.dim() >= 2]
    no_decay = [p for p in params.values() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": opts.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=opts.lr,
    )


def _train_step(model: Any, data: Any, micro: Any, params: dict[str, Any], device: str) -> tuple[float, int]:
    """Gradients of one optimizer step accumulated over its micro-batches, each weighted by its
    share of the step's tokens; returns the step's loss and token count."""
    import torch

    step_tokens = sum(len(idx) for idx in micro) * data.shape[1]
    loss_sum = 0.0
    for idx in micro:
        ids = data[torch.as_tensor(idx)].to(device)
        loss = model(input_ids=ids, labels=ids).loss
        weight = ids.numel() / step_tokens
        (loss * weight).backward()
        loss_sum += loss.item() * weight
    return loss_sum, step_tokens


def _resume(
    job: TrainingJob,
    fingerprint: dict[str, Any],
    params: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    result: LoopResult,
) -> tuple[dict[str, Any], int, int]:
    """Restore a checkpoint into the weights, optimizer, scheduler, random state and ``result``;
    returns the best weights so far, the step to start from and the evaluations without progress."""
    import torch

    state = load_checkpoint(job.checkpoint_dir, fingerprint)
    with torch.no_grad():
        for name, value in state["trainable"].items():
            params[name].copy_(value)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    torch.set_rng_state(state["rng"])
    result.base_loss = float(state["base_loss"])
    result.best_loss = float(state["best_loss"])
    result.best_step = int(state["best_step"])
    result.tokens_seen = int(state["tokens_seen"])
    result.seconds = float(state["seconds"])
    result.history = [dict(h) for h in state["history"]]
    return state["best"], int(state["step"]), int(state["bad_evals"])


def _checkpoint_state(
    fingerprint: dict[str, Any],
    step: int,
    params: dict[str, Any],
    best: dict[str, Any],
    optimizer: Any,
    scheduler: Any,
    result: LoopResult,
    bad_evals: int,
) -> dict[str, Any]:
    """Everything :func:`_resume` needs to continue exactly where the run stopped."""
    import torch

    return {
        "fingerprint": fingerprint,
        "step": step,
        "trainable": {n: p.detach().cpu() for n, p in params.items()},
        "best": {n: t.cpu() for n, t in best.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": torch.get_rng_state(),
        "base_loss": result.base_loss,
        "best_loss": result.best_loss,
        "best_step": result.best_step,
        "tokens_seen": result.tokens_seen,
        "seconds": result.seconds,
        "history": result.history,
        "bad_evals": bad_evals,
    }
