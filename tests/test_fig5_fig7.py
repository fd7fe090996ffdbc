"""Image experiments fig5-fig7: DDIM's affine form for linear models, moment helpers, retraining,
one-line data errors through the CLI, and small end-to-end runs."""

from __future__ import annotations

import json
import re

import pytest
import torch

from archdiff import metrics, seeding, theory
from archdiff.cli import main
from archdiff.data.images import load_images
from archdiff.denoisers import LinearDenoiser
from archdiff.experiments import fig6_linear_retrain as fig6
from archdiff.experiments import get
from archdiff.experiments.fig5_linear_rank_images import RANK_RTOL
from archdiff.runner import run_experiment
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels


@pytest.fixture(scope="module")
def digits() -> torch.Tensor:
    return load_images("digits")  # [1797, 1, 8, 8]


@pytest.mark.parametrize("steps", [10, 37])
def test_linear_ddim_is_the_sampler(digits, steps):
    """DDIM is affine in x_T for a linear denoiser: the one-projection form gives the sampler's output."""
    full = LinearDenoiser.fit(digits[:400])
    levels = sampling_levels("cosine", steps)
    x_T = initial_noise(64, (1, 8, 8), seed=3)
    for model in (full, full.truncated(5)):
        assert torch.allclose(theory.linear_ddim(model, x_T, levels), ddim(model, x_T, levels), atol=2e-5)
    pred = theory.ddim_prediction(full, levels)
    mean = ddim(full, torch.zeros(1, 1, 8, 8, dtype=torch.float64), levels)[0].flatten()  # E[affine(x_T)]
    assert torch.allclose(pred.mean, mean, atol=1e-10)


def test_ddim_gains_converge_to_the_ode_at_first_order():
    """Exact flow of a Gaussian direction: x_0 = sqrt(lam / (a_T lam + 1 - a_T)) x_T; DDIM is first order."""
    lam = torch.tensor([0.05, 1.0, 20.0, 900.0], dtype=torch.float64)
    a_T = float(sampling_levels("cosine", 10)[0])
    exact = lam / (a_T * lam + 1 - a_T)
    err = [((theory.ddim_gains(lam, sampling_levels("cosine", s)) ** 2 - exact) / exact).abs()
           for s in (100, 400, 1600)]
    assert bool((err[1] < err[0] / 3).all()) and bool((err[2] < err[1] / 3).all())  # 4x steps: ~1/4
    # with few steps the variance is shrunk, most for the largest eigenvalue
    g10 = theory.ddim_gains(lam, sampling_levels("cosine", 10)) ** 2 / exact
    assert bool((g10 < 1).all()) and float(g10[-1]) == float(g10.min())


@pytest.mark.parametrize("n", [30, 200])  # fewer and more samples than dimensions
def test_lowrank_moment_metrics_match_dense_formulas(n):
    """The Gram-route covariance error and spectrum equal the dense D x D computation and an SVD."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 4, 5, generator=g)  # D = 60
    v, _ = torch.linalg.qr(torch.randn(60, 7, generator=g, dtype=torch.float64))
    lam = torch.rand(7, generator=g, dtype=torch.float64) + 0.1
    target = (v * lam) @ v.T
    z = x.reshape(n, -1).double()
    z = z - z.mean(0)
    dense = float((z.T @ z / n - target).norm() / target.norm())
    assert metrics.covariance_error(x, v, lam) == pytest.approx(dense, rel=1e-9)
    svd = torch.linalg.svdvals(z / n**0.5) ** 2
    assert torch.allclose(metrics.covariance_eigvals(x), svd, atol=1e-10)


def test_rank_k_samples_have_numerical_rank_k(digits):
    full = LinearDenoiser.fit(digits)
    x_T = initial_noise(500, (1, 8, 8), seed=1)
    for k in (3, 12):
        ev = metrics.covariance_eigvals(ddim(full.truncated(k), x_T, sampling_levels("cosine", 10)))
        assert int((ev > RANK_RTOL * ev[0]).sum()) == k


@pytest.mark.parametrize("steps", [10, 1000])
def test_retrained_model_reproduces_mean_and_covariance(digits, steps):
    """The second model's (mu, Sigma) equal the first model's sampled law within 4 sampling SDs of n."""
    first = LinearDenoiser.fit(digits)
    n = digits.shape[0]
    levels = sampling_levels("cosine", steps)
    _, second = fig6.retrain(first, initial_noise(n, (1, 8, 8), seed=5), levels)
    # at 10 steps the first model samples the sampler's shrunk law; at 1000 it is N(mu, Sigma) to 0.3 %
    target = theory.ddim_prediction(first, levels)
    mean_err = float((second.mean - target.mean).norm() / target.eigvals.sum().sqrt())
    assert mean_err <= 4 / n**0.5
    cov_err = float((second.covariance - target.cov).norm() / target.cov.norm())
    assert cov_err <= 4 * metrics.covariance_error_scale(target.cov, n)
    if steps == 1000:
        assert float((second.covariance - first.covariance).norm() / first.covariance.norm()) <= \
            4 * metrics.covariance_error_scale(first.covariance, n) + 0.01


def test_the_covariance_null_passes_the_law_itself_and_fails_a_covariance_15_percent_off(digits):
    """metrics.moment_null (fig5's and fig6's threshold): n = 2000 draws of a rank-5 law stay within
    the null's mean + 4 SD; draws whose covariance is 1.15x the law's do not, though 4 x the error's RMS (the
    threshold it replaced) lets them pass."""
    law = theory.GaussianPrediction.of(LinearDenoiser.fit(digits, rank=5))
    n, g = 2000, seeding.generator(0, "test-null")
    limit = float(metrics.null_limit(metrics.moment_null(law, n, g)[:, 1]))
    assert metrics.moment_errors(law.sample(n, g), law)[1] <= limit
    wide = theory.GaussianPrediction(law.mean, law.eigvecs, 1.15 * law.eigvals, law.shape)
    error = metrics.moment_errors(wide.sample(n, g), law)[1]
    assert limit < error <= 4 * metrics.covariance_error_scale(law.eigvals, n)


def test_data_errors_come_out_as_one_line(tmp_path, capsys):
    for argv in (["run", "fig5-linear-rank-images", "--data", f"celeba:{tmp_path / 'missing'}"],
                 ["run", "fig7-poly-images", "--data", "imagenet"],
                 ["run", "fig6-linear-retrain", "--scale", "paper"]):
        assert main([*argv, "--out", str(tmp_path / "runs"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("archdiff: error: ") and err.count("\n") == 1


TINY = {
    "fig5-linear-rank-images": {"data": "digits", "n_train": 200, "ranks": [3, 8], "n_samples": 200,
                                "fine_steps": 50, "grid_columns": 4},
    "fig6-linear-retrain": {"data": "digits", "n_train": 200, "n_samples": 100, "fine_steps": 150,
                            "grid_columns": 4},
    "fig7-poly-images": {"data": "digits", "n_train": 60, "degrees": [1, 27], "width": 64,
                         "n_samples": 16, "steps": 6, "grid_columns": 4},
}


# claims that follow from a theorem on any data (exact rank, moments within 4 sampling SDs): they must hold
MUST_HOLD = {
    "fig5-linear-rank-images": ["numerical-rank-3", "numerical-rank-8", "cov-matches-ddim-prediction-3",
                                "cov-matches-ddim-prediction-8", "cov-matches-sigma-K-3",
                                "cov-matches-sigma-K-8"],
    "fig6-linear-retrain": ["mean-reproduced@10", "cov-reproduced@10", "mean-reproduced@150",
                            "cov-reproduced@150"],
    "fig7-poly-images": [],
}


@pytest.mark.parametrize("exp_id", list(TINY))
def test_tiny_runs_write_their_figures_and_claims(tmp_path, exp_id):
    rec = run_experiment(get(exp_id), "quick", out=tmp_path, overrides=TINY[exp_id], progress=False)
    folder = tmp_path / exp_id
    assert json.loads((folder / "metrics.json").read_text())["claims"] == rec["claims"]
    claims = {c["id"]: c for c in rec["claims"]}
    compare = {"<=": lambda a, b: a <= b, ">=": lambda a, b: a >= b}
    for c in claims.values():  # each record says how it was decided, and was decided that way
        assert c["holds"] == compare[c["comparison"]](c["measured"], c["threshold"])
    assert all(claims[i]["holds"] for i in MUST_HOLD[exp_id]), [claims[i] for i in MUST_HOLD[exp_id]]
    assert all(re.fullmatch(r"[a-z0-9_]+(\.[a-z0-9_]+)*", k) for k in rec["metrics"])
    assert any("grid" in f for f in rec["figures"]) and any("nearest" in f for f in rec["figures"])
    assert all((folder / f).stat().st_size > 0 for f in rec["figures"])


def test_fig7_claims_are_computed_from_its_metrics(tmp_path):
    """The copy claims restate the recorded copy fractions: rise = top - bottom, dual = min(cf, 1 - cf)."""
    rec = run_experiment(get("fig7-poly-images"), "quick", out=tmp_path, overrides=TINY["fig7-poly-images"],
                         progress=False)
    m, claims = rec["metrics"], {c["id"]: c for c in rec["claims"]}
    cf1, cf27 = m["copy_fraction.degree_1"], m["copy_fraction.degree_27"]
    assert claims["copy-fraction-rises"]["measured"] == pytest.approx(cf27 - cf1)
    assert claims["copies-and-novel-at-degree-27"]["measured"] == pytest.approx(min(cf27, 1 - cf27))
