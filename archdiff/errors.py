"""Errors and device choice shared by every layer (data, training, runner, CLI)."""

from __future__ import annotations

import torch


class UserError(Exception):
    """Bad input from the user: the CLI prints the message as one line and exits with status 2."""


class RunFailed(Exception):
    """Runs dispatched as jobs failed: the CLI prints the message (which runs, where their logs are) as
    one line and exits with status 1."""


def resolve_device(name: str | torch.device) -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is a UserError."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda was asked for but no CUDA GPU is visible; use --device cpu")
    if name != "cpu" and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}: use auto, cpu or cuda")
    return torch.device(name)
