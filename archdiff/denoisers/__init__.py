"""Denoisers: every one is called as ``denoiser(x_t, alpha_bar) -> x0_hat``; ``load`` reads any saved one."""

from archdiff.denoisers.base import Denoiser, levels_of, per_level
from archdiff.denoisers.closed_form import EmpiricalOptimal, LinearDenoiser
from archdiff.denoisers.local_score import LocalScore as LocalScore
from archdiff.denoisers.patch import PatchPolynomialDenoiser
from archdiff.denoisers.polynomial import MomentPolynomialDenoiser, PolynomialDenoiser
from archdiff.denoisers.saved import load
from archdiff.denoisers.trained import PerLevelDenoiser, TimeConditionedDenoiser

__all__ = [
    "Denoiser",
    "EmpiricalOptimal",
    "LinearDenoiser",
    "MomentPolynomialDenoiser",
    "PatchPolynomialDenoiser",
    "PerLevelDenoiser",
    "PolynomialDenoiser",
    "TimeConditionedDenoiser",
    "levels_of",
    "load",
    "per_level",
]
