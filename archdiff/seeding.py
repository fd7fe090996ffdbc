"""Seeds: every random stream in archdiff is derived here, from the user's seed and a label.

A run has one user seed s (``--seed``, 0 <= s <= 2**63 - 1). Each random stream -- the initial noise of a
comparison, a data subset, a random feature layer, the noisy training copies of one noise level, a
network's initial weights and batches -- draws from its own generator seeded with

    derive(s, *labels) = the first 63 bits of SHA-256("s|label_1|label_2|...")

so that
- streams with different labels are independent (no ``seed + 1`` stream that is another seed's main one);
- different user seeds give different streams, including seeds that differ by 2**32 (torch's CPU
  generator keeps only the low 32 bits of a seed given to it directly);
- a stream does not depend on call order, process, or Python's salted ``hash``.
"""

from __future__ import annotations

import hashlib

import torch

from archdiff.errors import UserError

MAX_SEED = 2**63 - 1


def check_seed(seed: int) -> int:
    """The seed as an int, or a UserError when it is not an integer in [0, 2**63 - 1]."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed {seed!r} is out of range: use an integer from 0 to 2**63 - 1")
    return seed


def level_label(alpha_bar: float) -> str:
    """The label of one noise level (alpha_bar rounded to 12 decimals, so float noise maps to one label)."""
    return f"level={round(float(alpha_bar), 12)!r}"


def derive(seed: int, *labels: object) -> int:
    """The seed of the stream named by ``labels`` under the user seed ``seed``: an int in [0, 2**63)."""
    text = "|".join([str(check_seed(seed)), *map(str, labels)])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") & MAX_SEED


def generator(seed: int, *labels: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch.Generator on ``device`` seeded with ``derive(seed, *labels)``."""
    return torch.Generator(device=device).manual_seed(derive(seed, *labels))
