"""Seed derivation: one stable hash per (seed, label), every seed's streams its own, bad seeds refused."""

from __future__ import annotations

import pytest
import torch

from archdiff import seeding
from archdiff.cli import main
from archdiff.denoisers import PolynomialDenoiser
from archdiff.errors import UserError
from archdiff.samplers import initial_noise
from archdiff.training import network_seeds


def test_seeds_that_differ_by_2_to_the_32_give_different_streams():
    """torch's CPU generator keeps the low 32 bits of a seed: N and N + 2**32 would share a stream."""
    assert torch.equal(torch.randn(4, generator=torch.Generator().manual_seed(5)),
                       torch.randn(4, generator=torch.Generator().manual_seed(5 + 2**32)))
    assert not torch.equal(initial_noise(4, (3,), 5), initial_noise(4, (3,), 5 + 2**32))
    assert network_seeds(5, [0.5]) != network_seeds(5 + 2**32, [0.5])


def test_labels_give_independent_streams_and_the_derivation_is_stable():
    """Different labels or levels give different seeds; the same (seed, labels) always the same."""
    seeds = {seeding.derive(s, *labels) for s in (0, 1) for labels in (("a",), ("b",), ("a", "b"))}
    assert len(seeds) == 6
    assert seeding.derive(3, "x") == seeding.derive(3, "x") and 0 <= seeding.derive(3, "x") < 2**63
    levels = [0.1, 0.2, 0.3]
    per_level = network_seeds(0, levels)
    assert len({s for pair in per_level for s in pair}) == 2 * len(levels)
    # a level's seeds do not depend on which other levels are trained beside it
    assert network_seeds(0, [0.2]) == [per_level[1]]
    # "seed + 1" is no longer another seed's main stream
    assert not torch.equal(initial_noise(4, (3,), 1), initial_noise(4, (3,), 0, stream="other"))


def test_polynomial_fit_noise_depends_on_seed_and_level_only():
    data = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    a, b = PolynomialDenoiser(data, 3, width=8), PolynomialDenoiser(data, 3, width=8)
    a.fit_at(0.3), a.fit_at(0.6)
    b.fit_at(0.6), b.fit_at(0.3)  # the other order: the same fits
    for level in (0.3, 0.6):
        assert torch.equal(a.fit_at(level).weights, b.fit_at(level).weights)
    assert a.fitted_levels == [0.3, 0.6] and a.fit_at(0.3) is a.fit_at(0.3)


@pytest.mark.parametrize("seed", [-1, 2**63, 1.5, True])
def test_a_seed_out_of_range_is_a_user_error(seed):
    with pytest.raises(UserError, match="out of range"):
        seeding.check_seed(seed)


def test_cli_refuses_a_negative_seed_in_one_line(tmp_path, capsys):
    assert main(["run", "fig2-linear-gmm", "--seed", "-2", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of range" in err
    assert not any(tmp_path.iterdir())  # nothing written
