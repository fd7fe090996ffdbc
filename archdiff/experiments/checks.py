"""Claims any image experiment can make about its own samples: neither collapsed nor exploded.

A claim that holds only because a model collapsed (every noise gives the same face) or exploded (values
far outside the image range) is a bug, so models that generate images carry these two claims too.
Thresholds, both derived from the data's range or the training set itself:
- exploded: the median over samples of a sample's RMS pixel value must be at most 1, the RMS of the
  brightest image in the data range [-1, 1] (any image in that range has RMS <= 1); so most samples
  could be images. Measured on the sampler's raw output, before any clamping for display.
- collapsed: the median distance between two samples from different noise (RMS per pixel) must be at
  least 1/3 of the median distance from a training image to its nearest other training image. The 1/3
  is the memorization criterion's (``metrics.COPY_RATIO``: a sample closer to a training image than 1/3
  of the distance to the next one is that image); pairs of samples closer than that are one image, and
  when most pairs are, different noises give the same image.
"""

from __future__ import annotations

import math

import torch

from archdiff import metrics
from archdiff.experiments.base import Claim, key
from archdiff.linalg import flatten


def sample_rms(samples: torch.Tensor) -> float:
    """Median over samples of the RMS pixel value: <= 1 for any image in [-1, 1]."""
    return float(flatten(samples).double().square().mean(1).sqrt().median())


def pair_distance(samples: torch.Tensor) -> float:
    """Median distance (RMS per pixel) between two different samples."""
    x = flatten(samples).double()
    return float(torch.pdist(x).median() / math.sqrt(x.shape[1]))


def train_nn_distance(train: torch.Tensor) -> float:
    """Median distance (RMS per pixel) from a training image to its nearest other training image."""
    d, _ = metrics.pairwise_nn(train, train, k=2)  # column 0 is the image itself
    return float(d[:, 1].median() / math.sqrt(flatten(train).shape[1]))


def health(samples: torch.Tensor) -> dict[str, float]:
    """The measured numbers behind ``health_claims``, plus the largest |value| and the spread of the
    samples (RMS over pixels of the per-pixel SD)."""
    x = flatten(samples).double()
    return {"sample_rms": sample_rms(samples), "pair_distance": pair_distance(samples),
            "max_abs_sample": float(x.abs().max()), "pixel_sd": float(x.std(0).square().mean().sqrt())}


def health_claims(name: str, m: dict, train_nn: float) -> list[Claim]:
    """The not-exploded and not-collapsed claims of one model, from its ``health`` metrics (keyed by name)
    in m and the training set's ``train_nn_distance``."""
    tag = key(name).replace("_", "-")
    return [
        Claim.at_most(
            f"not-exploded-{tag}",
            f"{name}: the samples lie in the image range: median over samples of the RMS pixel value (raw "
            f"sampler output), at most 1, the RMS of the brightest image in [-1, 1].",
            m[key("sample_rms", name)], 1.0),
        Claim.at_least(
            f"not-collapsed-{tag}",
            f"{name}: different noises give different images: median distance between two samples (RMS per "
            f"pixel), at least 1/3 (the memorization criterion's ratio) of the median distance from a "
            f"training image to its nearest other one.",
            m[key("pair_distance", name)], metrics.COPY_RATIO * train_nn),
    ]
