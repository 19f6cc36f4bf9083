"""Per-epoch training checkpoints, so a killed multi-day run resumes from its last epoch.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model and optimiser
state dicts, the number of finished epochs, which also fixes the learning-rate schedule
and the distributed sampler's shuffle, the RNG states, and the history so far), so it
loads with ``torch.load(weights_only=True)``: no arbitrary pickle is ever executed. It is
written atomically beside the cell's record (``<record>.ckpt``) and removed once the
record is written (the final weights stay as ``.pt``). A checkpoint that cannot be
resumed from (unreadable, keys missing, shapes that do not fit the model) is quarantined
with a warning and the cell starts afresh.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.store.records import (
    atomic_write_bytes,
    load_error,
    quarantine,
    torch_load,
    writing,
)

FORMAT = 1


def rng_states() -> dict[str, Any]:
    """Every RNG the training loop draws from (augmentation, loader seeds)."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []
    return {"torch": torch.get_rng_state(), "cuda": cuda}


def restore_rng(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(
    path: Path, *, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
    history: list[dict[str, Any]], epoch_times_s: list[float],
    epoch_machine: list[dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """State after ``epoch`` finished epochs, written through an atomic rename (with the
    machine's state over each epoch, so a resumed cell's timing stays judged)."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_states(),
        "history": history,
        "epoch_times_s": epoch_times_s,
        "epoch_machine": epoch_machine or [],
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    with writing(f"the checkpoint {path}"):
        atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(
    path: Path, model: nn.Module | None = None, optimizer: torch.optim.Optimizer | None = None
) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (weights-only unpickling), checked against ``model`` and
    ``optimizer``; None when there is none or it cannot be resumed from (quarantined)."""
    if not path.exists():
        return None
    try:
        state = torch_load(path)
    except Exception as exc:  # torch's unpickler fails in many ways on a damaged file
        quarantine(path, f"not a readable checkpoint: {load_error(exc)}")
        return None
    problem = _problem(state, model, optimizer)
    if problem is not None:
        quarantine(path, problem)
        return None
    return state


_FIELDS = {
    "epoch": int, "model": dict, "optimizer": dict, "rng": dict, "history": list,
    "epoch_times_s": list,
}  # fmt: skip


def _problem(
    state: Any, model: nn.Module | None, optimizer: torch.optim.Optimizer | None
) -> str | None:
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        return "not a checkpoint of this harness"
    wrong = [k for k, t in _FIELDS.items() if not isinstance(state.get(k), t)]
    wrong += ["epoch"] * (not wrong and state["epoch"] < 0)
    wrong += ["rng"] * (not wrong and not _is_rng(state["rng"]))
    wrong += ["history"] * (not wrong and not all(isinstance(h, dict) for h in state["history"]))
    wrong += ["epoch_times_s"] * (
        not wrong and not all(isinstance(t, int | float) for t in state["epoch_times_s"])
    )
    if wrong:
        return f"missing or wrong {', '.join(wrong)}"
    if model is not None:
        want = {
            k: (tuple(v.shape), v.dtype.is_floating_point) for k, v in model.state_dict().items()
        }
        have = {k: (tuple(v.shape), v.dtype.is_floating_point) if isinstance(v, torch.Tensor)
                else None for k, v in state["model"].items()}  # fmt: skip
        if want != have:
            return "its weights do not fit the model (keys, shapes or types differ)"
    if optimizer is not None:
        groups = state["optimizer"].get("param_groups")
        if not (isinstance(groups, list) and isinstance(state["optimizer"].get("state"), dict)
                and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)
                and [len(g["params"]) for g in groups] ==
                [len(g["params"]) for g in optimizer.param_groups]):  # fmt: skip
            return "its optimiser state does not fit the model"
    return None


def _is_rng(states: dict[str, Any]) -> bool:
    """RNG states that ``restore_rng`` can set (what ``rng_states`` saved)."""
    mine = torch.get_rng_state()
    saved = states.get("torch")
    return (
        isinstance(saved, torch.Tensor) and saved.dtype == mine.dtype
        and saved.shape == mine.shape and isinstance(states.get("cuda"), list)
        and all(isinstance(s, torch.Tensor) and s.dtype == torch.uint8 for s in states["cuda"])
    )  # fmt: skip
