"""One training loop for every stage that trains (post_train, finetune_teacher, distill_*).

Hugging Face ``run_*_no_trainer`` style: the caller builds one ``Accelerator`` and
passes a model and optimizer that went through ``accelerator.prepare``; the loop
shards each epoch's batches across processes, calls ``accelerator.backward``, stops on
a non-finite loss with a clear error, logs to dvclive on the main process, and saves a
resume point after every epoch (see :mod:`tinynewsrec.train.checkpoint`).
"""

from __future__ import annotations

import logging
import math
import random
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from ..errors import TinyNewsRecError
from .checkpoint import Checkpointer

log = logging.getLogger("tinynewsrec")


class NonFiniteLossError(TinyNewsRecError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class LoopConfig:
    epochs: int
    batch_size: int
    seed: int
    #: stop an epoch after this many steps (None = the whole data); keeps the CPU demo short
    max_steps_per_epoch: int | None = None
    grad_clip: float | None = 1.0
    log_every: int = 10
    name: str = "train"  # what the progress bar and the error messages call this run
    #: learning rate over the run: "constant", or "linear" (warm-up over the first ``warmup``
    #: fraction of all steps, then linear decay to 0: transformers' get_linear_schedule_with_warmup)
    schedule: str = "constant"
    warmup: float = 0.0


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: LoopConfig, total_steps: int, done_steps: int = 0):
    """The learning-rate scheduler of ``cfg`` (None for a constant rate), advanced past the
    ``done_steps`` optimiser steps of a resumed run, so a resume follows the same curve."""
    if cfg.schedule == "constant":
        return None
    if cfg.schedule != "linear":
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r}")
    from transformers import get_linear_schedule_with_warmup

    warmup = int(round(cfg.warmup * total_steps))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, max(total_steps, 1))
    with warnings.catch_warnings():  # replaying steps already taken: no optimiser step between them
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*before.*optimizer.step", category=UserWarning)
        for _ in range(done_steps):
            scheduler.step()
    return scheduler


class IndexDataset(Dataset):
    """Rows 0..n-1; the collate function turns a list of row numbers into a batch."""

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        return i


def full_state_dict(accelerator, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Every weight of the (prepared) ``model``, gathered whole under FSDP or DeepSpeed ZeRO-3
    (``accelerator.get_state_dict``). A collective: EVERY process must call it; the result is
    complete on the main process, which is the one that writes. One process / DDP: the unwrapped
    model's own state dict (no copy)."""
    return accelerator.get_state_dict(model)


def optimizer_is_sharded(accelerator) -> bool:
    """FSDP and DeepSpeed (ZeRO 1-3) split the optimizer state between processes: the main
    process alone cannot save it (see :class:`~tinynewsrec.train.checkpoint.Checkpointer`)."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def check_finite(accelerator, loss: torch.Tensor, where: str) -> None:
    """Stop EVERY process with the same :class:`NonFiniteLossError` when the loss is NaN or
    infinite on ANY of them (one all-reduce of a flag per step, so no rank is left waiting in
    the next collective and dies with a "connection closed" traceback)."""
    bad = (~torch.isfinite(loss.detach())).any().to(torch.float32).reshape(1)
    if accelerator.num_processes > 1:
        flags = accelerator.gather(bad.to(accelerator.device)).cpu()
    else:
        flags = bad.cpu()
    if flags.any():
        ranks = [int(r) for r in torch.nonzero(flags).flatten()]
        where_ranks = f" on process {', '.join(map(str, ranks))}" if accelerator.num_processes > 1 else ""
        raise NonFiniteLossError(f"{where}, the loss became NaN or infinite{where_ranks}; "
                                 "lower the learning rate or check the input data")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def fit(
    accelerator,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    n_rows: int,
    collate: Callable[[list[int]], Any],
    step_fn: Callable[[torch.nn.Module, Any], tuple[torch.Tensor, dict[str, float]]],
    cfg: LoopConfig,
    checkpointer: Checkpointer | None = None,
    live=None,
    on_epoch_end: Callable[[int], bool | None] | None = None,
    before_optimizer_step: Callable[[torch.nn.Module], None] | None = None,
) -> dict:
    """Train ``model`` for ``cfg.epochs`` epochs over rows ``0..n_rows-1``.

    ``step_fn(model, batch)`` returns the loss and a dict of loss parts for logging. A step is:
    ``step_fn``, ``accelerator.backward(loss)``, gradient clipping (``cfg.grad_clip``),
    ``before_optimizer_step(model)`` if given (e.g. NewsBERT's momentum distillation of
    gradients, which edits the clipped ``.grad`` in place), ``optimizer.step()``, the learning-rate
    schedule's step (``cfg.schedule``), zeroing. Returns the last epoch's mean loss and parts
    (with ``lr``, the last step's learning rate, when the schedule is not constant).
    ``on_epoch_end(epoch)`` runs after each epoch on every process; returning True on any
    process ends training after that epoch's checkpoint (early stopping).
    """
    start_epoch, history = 0, []
    if checkpointer is not None:
        counters = checkpointer.load(accelerator.unwrap_model(model), optimizer)
        if counters is not None:
            start_epoch, history = counters["epoch"], counters["history"]
            log.info("%s: resuming after epoch %d from %s", cfg.name, start_epoch, checkpointer.folder)
    dataset = IndexDataset(n_rows)
    summary: dict = history[-1] if history else {}
    scheduler = None
    for epoch in range(start_epoch, cfg.epochs):
        # the data order is the same on every process (then sharded); dropout differs per process
        seed_everything(cfg.seed * 1_000 + epoch * 10 + accelerator.process_index)
        order = torch.Generator().manual_seed(cfg.seed * 1_000 + epoch)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=RandomSampler(dataset, generator=order),
                            collate_fn=collate)
        loader = accelerator.prepare_data_loader(loader)
        steps = len(loader) if cfg.max_steps_per_epoch is None else min(len(loader), cfg.max_steps_per_epoch)
        if epoch == start_epoch:
            scheduler = make_scheduler(optimizer, cfg, cfg.epochs * steps, start_epoch * steps)
        model.train()
        totals: dict[str, float] = {}
        bar = tqdm(total=steps, desc=f"{cfg.name} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not accelerator.is_local_main_process, leave=False)
        for step, batch in enumerate(loader):
            if step >= steps:
                break
            loss, parts = step_fn(model, batch)
            check_finite(accelerator, loss, f"{cfg.name}: at epoch {epoch + 1}, step {step + 1}")
            accelerator.backward(loss)
            if cfg.grad_clip:
                accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            if before_optimizer_step is not None:
                before_optimizer_step(model)
            optimizer.step()
            if scheduler is not None:
                parts = {**parts, "lr": optimizer.param_groups[0]["lr"]}  # the rate this step used
                scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            parts = {"loss": loss.item(), **parts}
            for k, v in parts.items():
                totals[k] = totals.get(k, 0.0) + v
            bar.update(1)
            bar.set_postfix(loss=f"{parts['loss']:.4f}")
            if live is not None and accelerator.is_main_process and (step + 1) % cfg.log_every == 0:
                for k, v in parts.items():
                    live.log_metric(f"{cfg.name}/step/{k}", v)
                live.next_step()
        bar.close()
        n = max(1, min(steps, len(loader)))
        summary = {k: v / n for k, v in totals.items()} | {"epoch": epoch + 1}
        # average over processes so every rank logs the same numbers
        if accelerator.num_processes > 1:
            t = torch.tensor([summary[k] for k in sorted(totals)], device=accelerator.device)
            t = accelerator.reduce(t, reduction="mean")
            summary.update({k: float(v) for k, v in zip(sorted(totals), t.tolist())})
        history.append(summary)
        log.info("%s: epoch %d/%d, mean loss %.4f", cfg.name, epoch + 1, cfg.epochs, summary.get("loss", math.nan))
        stop = bool(on_epoch_end(epoch + 1)) if on_epoch_end is not None else False
        if accelerator.num_processes > 1:  # one process asking to stop stops them all
            flag = accelerator.reduce(torch.tensor([float(stop)], device=accelerator.device), reduction="sum")
            stop = bool(flag.item() > 0)
        accelerator.wait_for_everyone()
        if checkpointer is not None:
            state = full_state_dict(accelerator, model)  # every process: a collective under FSDP / ZeRO-3
            if accelerator.is_main_process:
                checkpointer.save(accelerator.unwrap_model(model), optimizer, {"epoch": epoch + 1, "history": history},
                                  state=state, optimizer_sharded=optimizer_is_sharded(accelerator))
        accelerator.wait_for_everyone()
        if stop:
            log.info("%s: stopping after epoch %d of at most %d (early stopping)", cfg.name, epoch + 1, cfg.epochs)
            break
    return {"history": history, "last": summary}
