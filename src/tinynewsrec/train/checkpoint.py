"""Resumable training state without pickle: safetensors for tensors, JSON for the rest.

A training stage keeps its resume point in ``.cache/checkpoints/<name>/`` (outside the
DVC outputs, which DVC deletes before rerunning a stage). After every epoch the
trainable parameters, the optimizer state and the loop counters are written there
atomically; a rerun with the same config fingerprint continues after the last finished
epoch. Each epoch's data order and dropout are seeded from (seed, epoch, process), so
a resumed run repeats exactly what the uninterrupted run would have done.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from ..io import atomic_dir, sweep_stale

log = logging.getLogger("tinynewsrec")


def fingerprint(*parts: Any) -> str:
    """A short hash of JSON-serialisable config parts (what must match to resume)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _optimizer_to_flat(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, pstate in state["state"].items():
        meta["state"][str(pid)] = {}
        for key, value in pstate.items():
            if torch.is_tensor(value):
                tensors[f"optim.{pid}.{key}"] = value.detach().cpu().contiguous()
                meta["state"][str(pid)][key] = "tensor"
            else:
                meta["state"][str(pid)][key] = value
    return tensors, meta


def _optimizer_from_flat(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, pstate in meta["state"].items():
        state[int(pid)] = {
            key: tensors[f"optim.{pid}.{key}"] if value == "tensor" else value for key, value in pstate.items()
        }
    return {"state": state, "param_groups": meta["param_groups"]}


class Checkpointer:
    """Saves and restores (trainable params, optimizer, counters) under ``folder``."""

    def __init__(self, folder: str | Path, config_fingerprint: str):
        self.folder = Path(folder)
        self.fingerprint = config_fingerprint

    def save(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, counters: dict,
             state: dict[str, torch.Tensor] | None = None, optimizer_sharded: bool = False) -> None:
        """Write the trainable weights, the optimizer state and ``counters``. ``state``: the
        model's full state dict when it had to be gathered from several processes (FSDP /
        ZeRO-3, :func:`~tinynewsrec.train.loop.full_state_dict`); else the model's own weights.
        ``optimizer_sharded`` (FSDP / DeepSpeed): the optimizer state lives split over the
        processes and is NOT saved; a resume then restarts Adam's moments (logged)."""
        trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        source = state if state is not None else dict(model.named_parameters())
        tensors = {f"model.{n}": source[n].detach().cpu().contiguous() for n in trainable}
        opt_meta = None
        if not optimizer_sharded:
            opt_tensors, opt_meta = _optimizer_to_flat(optimizer.state_dict())
            tensors.update(opt_tensors)
        meta = {"fingerprint": self.fingerprint, "counters": counters, "optimizer": opt_meta}
        with atomic_dir(self.folder) as tmp:
            save_file(tensors, tmp / "state.safetensors")
            (tmp / "state.json").write_text(json.dumps(meta, indent=1))

    def load(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict | None:
        """Restore the last saved state; ``None`` when there is none or it is for another config.

        A resume state that cannot be read (truncated, edited, from another code version) is
        only a cache of finished epochs: it is deleted with a warning naming it, and training
        starts from the first epoch. It never blocks the stage.
        """
        from safetensors import SafetensorError

        meta_path = self.folder / "state.json"
        if not meta_path.exists():
            return None
        params = dict(model.named_parameters())
        before = {n: p.detach().clone() for n, p in params.items() if p.requires_grad}
        optimizer_before = optimizer.state_dict()
        try:
            meta = json.loads(meta_path.read_text())
            if not isinstance(meta, dict) or meta.get("fingerprint") != self.fingerprint:
                return None
            tensors = load_file(self.folder / "state.safetensors")
            saved = {key[len("model."):]: value for key, value in tensors.items() if key.startswith("model.")}
            for name, value in saved.items():
                if name not in params or params[name].shape != value.shape:
                    raise ValueError(f"parameter {name} does not match the model")
            with torch.no_grad():
                for name, value in saved.items():
                    params[name].copy_(value)
            if meta.get("optimizer") is None:
                log.warning("%s holds no optimizer state (saved under a sharded strategy); Adam restarts", self.folder)
            else:
                optimizer.load_state_dict(_optimizer_from_flat(tensors, meta["optimizer"]))
            counters = meta["counters"]
            if not isinstance(counters, dict):
                raise ValueError("counters are not a mapping")
            return counters
        except (OSError, ValueError, KeyError, TypeError, SafetensorError) as e:
            text = " ".join(str(e).split())
            log.warning(f"{self.folder}: the resume state is unreadable ({type(e).__name__}: {text}); "
                        "deleted it, training starts from the first epoch")
            with torch.no_grad():  # undo a partial restore
                for name, value in before.items():
                    params[name].copy_(value)
            optimizer.load_state_dict(optimizer_before)
            self.clear()
            return None

    def clear(self) -> None:
        """Delete the resume state, and the temporaries of a save that was killed (SIGKILL)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        sweep_stale(self.folder)
