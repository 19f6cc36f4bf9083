"""Per-epoch training checkpoints, so a killed multi-day run resumes from its last epoch.

A checkpoint is a plain dict of tensors, numbers, strings and lists (model and optimiser
state dicts, the number of finished epochs, which also fixes the learning-rate schedule
and the distributed sampler's shuffle, the RNG states, and the history so far), so it
loads with ``torch.load(weights_only=True)``: no arbitrary pickle is ever executed. It is
written atomically beside the cell's record (``<record>.ckpt``) and removed once the
record is written (the final weights stay as ``.pt``).
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import UserError
from .store import atomic_write_bytes

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
) -> None:  # fmt: skip
    """State after ``epoch`` finished epochs, written through an atomic rename."""
    state = {
        "format": FORMAT,
        "epoch": epoch,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict(),
        "rng": rng_states(),
        "history": history,
        "epoch_times_s": epoch_times_s,
    }
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The checkpoint at ``path`` (weights-only unpickling), or None when there is none."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(
            f"refusing to resume from {path} ({reason}); delete it to start the cell afresh"
        ) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path} is not a checkpoint of this harness; delete it to start afresh")
    return state
