"""Experiments, one module per paper figure; each module defines ``EXPERIMENT``.

The registry is built by discovery: adding a module here that defines ``EXPERIMENT`` registers it (a module
whose figure has variants lists them all in ``EXPERIMENTS``).
"""

from __future__ import annotations

import importlib
import pkgutil

from archdiff.experiments.base import Claim, Context, Experiment, Result, UserError

__all__ = ["Claim", "Context", "Experiment", "Result", "UserError", "registry", "get"]


def registry() -> dict[str, Experiment]:
    """All experiments, keyed by id, in figure order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name in ("base", "figures", "trained"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        found += getattr(module, "EXPERIMENTS", [module.EXPERIMENT] if hasattr(module, "EXPERIMENT") else [])
    return {e.id: e for e in sorted(found, key=_order)}


def _order(e: Experiment) -> tuple:
    head = e.id.split("-")[0]
    digits = "".join(c for c in head if c.isdigit())
    return (0 if head.startswith("fig") else 1, int(digits or 0), e.id)


def get(experiment_id: str) -> Experiment:
    """The experiment with this id, or a UserError listing the known ids."""
    reg = registry()
    if experiment_id not in reg:
        raise UserError(
            f"unknown experiment {experiment_id!r}; known: {', '.join(reg)} (see 'archdiff list')"
        )
    return reg[experiment_id]
