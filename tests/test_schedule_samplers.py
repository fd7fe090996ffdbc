"""Schedules and samplers against textbook formulas written out independently."""

import math

import pytest
import torch

from archdiff.denoisers import LinearDenoiser
from archdiff.samplers import ddim, ddim_step, ddpm, initial_noise
from archdiff.schedule import cosine, linear, noisy, sampling_levels


def test_cosine_schedule_endpoints_and_monotone():
    t = torch.linspace(0, 1, 1001, dtype=torch.float64)
    a = cosine(t)
    assert a.dtype == torch.float64
    assert a[0] == pytest.approx(1.0, abs=1e-15)
    assert a[-1] == pytest.approx(0.0, abs=1e-15)
    assert bool((a[1:] < a[:-1]).all())


def test_linear_schedule_is_the_limit_of_discrete_ddpm_betas():
    # prod_{i<=t T} (1 - beta_i) with beta linear from 1e-4 to 0.02 over T = 1000 steps
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    discrete = torch.cumprod(1 - betas, 0)
    t = torch.arange(1, T + 1, dtype=torch.float64) / T
    # log(1 - b) = -b - b^2/2 - ...: the continuous form drops the b^2 terms; sum vs integral of a
    # linear beta differs by at most one step's beta
    tol = (betas**2).cumsum(0) * 0.5 * 1.1 + betas.max()
    assert bool(((linear(t).log() - discrete.log()).abs() <= tol).all())


def test_sampling_levels_run_from_noise_to_clean():
    levels = sampling_levels("cosine", 10)
    assert levels.shape == (11,)
    assert float(levels[-1]) == 1.0
    assert bool((levels[1:] > levels[:-1]).all())
    assert float(levels[0]) == pytest.approx(float(cosine(torch.tensor(0.999, dtype=torch.float64))))


def test_ddim_step_eta0_matches_textbook_update():
    g = torch.Generator().manual_seed(1)
    x_t, x0 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    a_t, a_prev = 0.3, 0.6
    eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
    expected = math.sqrt(a_prev) * x0 + math.sqrt(1 - a_prev) * eps
    assert torch.allclose(ddim_step(x_t, x0, a_t, a_prev, 0.0), expected, atol=1e-6)


def test_ddim_step_eta1_is_the_ddpm_posterior():
    # Ho et al. 2020, eq. 6-7: q(x_prev | x_t, x_0) = N(mu_tilde, beta_tilde)
    g = torch.Generator().manual_seed(2)
    x_t, x0, z = (torch.randn(4, 2, generator=g, dtype=torch.float64) for _ in range(3))
    a_t, a_prev = 0.2, 0.5
    alpha_t, beta_t = a_t / a_prev, 1 - a_t / a_prev
    mu = (math.sqrt(a_prev) * beta_t / (1 - a_t)) * x0 + (math.sqrt(alpha_t) * (1 - a_prev) / (1 - a_t)) * x_t
    var = (1 - a_prev) / (1 - a_t) * beta_t
    assert torch.allclose(ddim_step(x_t, x0, a_t, a_prev, 1.0, z), mu + math.sqrt(var) * z, atol=1e-12)


def test_ddim_step_matches_diffusers_when_installed():
    diffusers = pytest.importorskip("diffusers")
    sched = diffusers.DDIMScheduler(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                                    prediction_type="sample", clip_sample=False, set_alpha_to_one=True)
    sched.set_timesteps(10)
    t, t_prev = int(sched.timesteps[3]), int(sched.timesteps[4])
    a_t, a_prev = float(sched.alphas_cumprod[t]), float(sched.alphas_cumprod[t_prev])
    g = torch.Generator().manual_seed(3)
    x_t, x0 = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    ours = ddim_step(x_t, x0, a_t, a_prev, 0.0)
    theirs = sched.step(x0, t, x_t, eta=0.0).prev_sample
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_linear_denoiser_ddim_reproduces_the_gaussian(gaussian_data):
    """Theorem 3: DDIM with the exact linear denoiser samples N(mu, Sigma) (fine grid)."""
    fit = LinearDenoiser.fit(gaussian_data)
    n = 8000
    x = ddim(fit, initial_noise(n, (4,), 0).double(), sampling_levels("cosine", 500))
    mean, cov = gaussian_data.mean(0), torch.cov(gaussian_data.T, correction=0)
    se_mean = (cov.diagonal() / n).sqrt()
    assert bool(((x.mean(0) - mean).abs() < 4 * se_mean).all())
    # sampling SD of a covariance entry: sqrt((S_ij^2 + S_ii S_jj) / n); the 500-step bias is ~0.5 %
    se_cov = ((cov**2 + cov.diagonal()[:, None] * cov.diagonal()[None, :]) / n).sqrt()
    assert bool(((torch.cov(x.T) - cov).abs() < 4 * se_cov + 0.01 * cov.abs().max()).all())


def test_ddpm_reproduces_the_gaussian_and_ignores_batch_size(gaussian_data):
    fit = LinearDenoiser.fit(gaussian_data)
    x_T = initial_noise(4000, (4,), 5).double()
    levels = sampling_levels("cosine", 200)
    a = ddpm(fit, x_T, levels, generator=torch.Generator().manual_seed(9))
    b = ddpm(fit, x_T, levels, generator=torch.Generator().manual_seed(9), batch_size=333)
    assert torch.equal(a, b)
    var = torch.cov(gaussian_data.T, correction=0).diagonal()
    assert bool(((a.var(0) - var).abs() < 4 * var * math.sqrt(2 / 4000) + 0.02 * var).all())


def test_same_seed_same_samples_and_stochastic_sampler_needs_a_generator(gaussian_data):
    fit = LinearDenoiser.fit(gaussian_data)
    levels = sampling_levels("cosine", 10)
    s1 = ddim(fit, initial_noise(64, (4,), 7), levels)
    s2 = ddim(fit, initial_noise(64, (4,), 7), levels)
    assert torch.equal(s1, s2)
    assert not torch.equal(s1, ddim(fit, initial_noise(64, (4,), 8), levels))
    with pytest.raises(ValueError):
        ddim(fit, initial_noise(4, (4,), 7), levels, eta=0.5)


def test_noisy_matches_forward_process():
    x0, n = torch.ones(3, 2), torch.full((3, 2), 2.0)
    assert torch.allclose(noisy(x0, 0.25, n), torch.full((3, 2), 0.5 + math.sqrt(0.75) * 2))


def test_noisy_broadcasts_levels_over_leading_dims_and_is_exact_in_float64():
    """Levels [L, B] against x0 [L, B, C, H]: each element uses its own level; float64 input is exact."""
    g = torch.Generator().manual_seed(0)
    x0, n = torch.randn(3, 4, 2, 5, generator=g, dtype=torch.float64), torch.randn(3, 4, 2, 5, generator=g,
                                                                                   dtype=torch.float64)
    levels = torch.rand(3, 4, generator=g, dtype=torch.float64)
    out = noisy(x0, levels, n)
    for i in range(3):
        for j in range(4):
            a = float(levels[i, j])
            assert torch.equal(out[i, j], math.sqrt(a) * x0[i, j] + math.sqrt(1 - a) * n[i, j])
