"""Patch polynomial denoiser: equal to a plain per-pixel loop, to the global model at p = H, contract."""

from __future__ import annotations

import math

import pytest
import torch

from archdiff.denoisers import PolynomialDenoiser
from archdiff.denoisers import patch as patch_module
from archdiff.denoisers.patch import (
    PAPER_PATCHES,
    PatchPolynomialDenoiser,
    axis_groups,
    projections,
    scaled_schedule,
)
from archdiff.denoisers.polynomial import RECIPES, Recipe, fit_noise, power_features, random_layer
from archdiff.linalg import ridge_solve
from archdiff.schedule import noisy as forward_noise
from archdiff.threads import policy

LEVEL = 0.37


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads, and threaded tiny LAPACK calls crawl on shared cores."""
    with policy(1):
        yield


def reference_inputs(data: torch.Tensor, alpha_bar: float, p: int, width: int, seed: int, recipe: Recipe):
    """What every pixel's fit reads: clean images, their noisy copies (the global model's draw), R and b."""
    x = data.to(torch.float64)
    noise = fit_noise(seed, alpha_bar, (x.shape[0], x[0].numel()))
    noisy = forward_noise(x, alpha_bar, noise.to(x.device).reshape(x.shape))
    r, b = random_layer(x.shape[1] * p * p, width, seed, recipe.bias, device=x.device)
    return x, noisy, r, b


def pixel_estimate(inputs, y: torch.Tensor, i: int, j: int, p: int, recipe: Recipe, *, degree: int = 3,
                   ridge: float = 1e-5) -> torch.Tensor:
    """Fit pixel (i, j)'s regression on its clamped patch alone and predict it for y: [B, C]."""
    x, noisy, r, b = inputs
    divisor = float(x.std()) if recipe.sd_scaled else 1.0
    normalize = recipe.normalize
    h, w = x.shape[2:]
    u, v = min(max(i - p // 2, 0), h - p), min(max(j - p // 2, 0), w - p)
    z = noisy[:, :, u:u + p, v:v + p].reshape(x.shape[0], -1) @ r.T + b  # [N, F]
    scale = z.abs().amax(0).clamp_min(1e-300)
    phi = power_features(z, scale, degree, normalize, divisor)
    weights = reference_solve(phi, x[:, :, i, j], ridge, recipe)  # [F + 1, C]
    zq = y[:, :, u:u + p, v:v + p].to(x).reshape(y.shape[0], -1) @ r.T + b  # [B, F]
    return power_features(zq, scale, degree, normalize, divisor) @ weights


def reference_solve(phi: torch.Tensor, target: torch.Tensor, ridge: float, recipe: Recipe) -> torch.Tensor:
    """The recipe's ridge least squares by lstsq; a free offset (``centred``) as the augmented system
    (Phi^T Phi + (M - 1) ridge diag(1, ..., 1, 0)) W = Phi^T target, the constant column last."""
    if not recipe.centred:
        return ridge_solve(phi, target, ridge, relative=recipe.relative_ridge)
    assert not recipe.relative_ridge, "the reference writes out the absolute ridge only"
    penalty = torch.ones(phi.shape[1], dtype=phi.dtype)
    penalty[-1] = 0.0
    system = phi.T @ phi + (phi.shape[0] - 1) * ridge * torch.diag(penalty)
    return torch.linalg.lstsq(system, phi.T @ target).solution


def per_pixel_estimate(data: torch.Tensor, y: torch.Tensor, alpha_bar: float, p: int, width: int, *,
                       seed: int = 0, recipe: str = "authors", **kw) -> torch.Tensor:
    """Reference: loop over every pixel, fit its patch's regression, predict it: [B, C, H W].

    Written independently of the vectorized code: no classes, no batching, the global model's lstsq.
    """
    rec = RECIPES[recipe]
    inputs = reference_inputs(data, alpha_bar, p, width, seed, rec)
    h, w = data.shape[2:]
    pixels = [pixel_estimate(inputs, y, i, j, p, rec, **kw) for i in range(h) for j in range(w)]
    return torch.stack(pixels, -1)


def images(n: int, c: int, h: int, w: int, seed: int) -> torch.Tensor:
    """Smooth-ish random images in [-1, 1] (a random low-frequency field plus a little noise)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, c, 3, 3, generator=g)
    up = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear", align_corners=True)
    return (up + 0.2 * torch.randn(n, c, h, w, generator=g)).tanh()


@pytest.mark.parametrize("h, w, p", [(8, 8, 3), (8, 8, 4), (8, 8, 8), (9, 7, 6), (10, 10, 1)])
@pytest.mark.parametrize("recipe, width", [("column", 12), ("authors", 12), ("column", 60), ("authors", 60)])
def test_vectorized_equals_per_pixel_loop(h, w, p, recipe, width):
    """Width 12 < 40 images solves the normal equations, width 60 > 40 their dual form."""
    data = images(40, 2, h, w, seed=1)
    noise = torch.randn(3, 2, h, w, generator=torch.Generator().manual_seed(0))
    y = (math.sqrt(LEVEL) * images(3, 2, h, w, seed=2) + math.sqrt(1 - LEVEL) * noise).double()
    # a small chunk budget so that classes are split over several chunks
    den = PatchPolynomialDenoiser(data, [(p, width)], seed=5, recipe=recipe, max_chunk_bytes=200_000)
    ref = per_pixel_estimate(data, y, LEVEL, p, width, seed=5, recipe=recipe)
    torch.testing.assert_close(den(y, LEVEL).reshape(3, 2, -1), ref, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("h, w, p", [(8, 8, 3), (9, 7, 6), (12, 12, 12), (10, 10, 1)])
def test_every_projection_method_is_the_patch_product(h, w, p):
    """Matrix products of copied-out patches and FFT correlation give R y_P + b for every clamped start."""
    g = torch.Generator().manual_seed(4)
    y = torch.randn(5, 2, h, w, generator=g, dtype=torch.float64)
    r = torch.randn(7, 2 * p * p, generator=g, dtype=torch.float64)
    b = torch.randn(7, generator=g, dtype=torch.float64)
    u, v = 1 if h > p else 0, w - p  # one start, checked against the plain product
    expected = y[:, :, u:u + p, v:v + p].reshape(5, -1) @ r.T + b  # [N, F]
    for method in ("gemm", "fft", "auto"):
        z = projections(y, r, b, p, method)
        assert z.shape == (h - p + 1, w - p + 1, 5, 7)
        torch.testing.assert_close(z[u, v], expected, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(z, projections(y, r, b, p, "gemm"), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", ["gemm", "fft"])
def test_projections_split_over_images_when_one_row_overflows_the_work_budget(method, monkeypatch):
    """A budget below one row of starts for all images splits the images too: the same outputs."""
    g = torch.Generator().manual_seed(5)
    y = torch.randn(6, 2, 9, 8, generator=g, dtype=torch.float64)
    r = torch.randn(4, 2 * 3 * 3, generator=g, dtype=torch.float64)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    whole = projections(y, r, b, 3, method)
    monkeypatch.setattr(patch_module, "WORK_BYTES", 1)  # one image and one row of starts per chunk
    torch.testing.assert_close(projections(y, r, b, 3, method), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("method", ["gemm", "fft"])
def test_each_method_equals_the_per_pixel_loop(method):
    data = images(40, 2, 9, 8, seed=1)
    y = images(3, 2, 9, 8, seed=2).double()
    den = PatchPolynomialDenoiser(data, [(5, 30)], seed=5, method=method, max_chunk_bytes=100_000)
    ref = per_pixel_estimate(data, y, LEVEL, 5, 30, seed=5)
    torch.testing.assert_close(den(y, LEVEL).reshape(3, 2, -1), ref, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("width", [48, 100])
@pytest.mark.parametrize("recipe", ["authors", "column"])
def test_full_patch_equals_global_polynomial(width, recipe):
    """One patch covering the image is the global model: same R, b, noise draw, features and fit."""
    data = images(60, 3, 6, 6, seed=3)
    y = torch.randn(5, 3, 6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    glob = PolynomialDenoiser(data, 3, width=width, seed=7, recipe=recipe)
    patch = PatchPolynomialDenoiser(data, [(6, width)], seed=7, recipe=recipe)
    for a in (0.05, LEVEL, 0.9):
        torch.testing.assert_close(patch(y, a), glob(y, a), rtol=1e-8, atol=1e-8)


def test_axis_groups_serve_every_pixel_once_from_its_clamped_patch():
    for size, p in [(10, 3), (10, 4), (10, 10), (7, 1), (64, 55)]:
        served = torch.cat([px.reshape(-1) for _, px in axis_groups(size, p)])
        assert sorted(served.tolist()) == list(range(size))
        for starts, px in axis_groups(size, p):
            owner = (px - p // 2).clamp(0, size - p)
            assert torch.equal(owner, starts[:, None].expand_as(px))


def test_schedule_lookup_and_scaling():
    assert [p for p, _ in scaled_schedule(64)] == list(PAPER_PATCHES)
    ps = [p for p, _ in scaled_schedule(25)]
    assert ps[0] == 25 and all(p % 2 == 1 and 3 <= p <= 25 for p in ps) and ps == sorted(ps, reverse=True)
    data = images(30, 1, 6, 6, seed=4)
    levels = [0.1, 0.5, 0.9]
    den = PatchPolynomialDenoiser(data, [(6, 8), (4, 8), (2, 8)], levels=levels)
    assert [den.step(a) for a in (0.1, 0.45, 0.52, 0.99)] == [0, 1, 1, 2]
    y = torch.randn(2, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    single = PatchPolynomialDenoiser(data, [(4, 8)])
    torch.testing.assert_close(den(y, 0.5), single(y, 0.5))


def test_denoiser_contract_and_determinism():
    data = images(30, 2, 7, 7, seed=6)
    y = torch.randn(4, 2, 7, 7, generator=torch.Generator().manual_seed(3))
    levels = torch.tensor([0.2, 0.7, 0.2, 0.7], dtype=torch.float64)
    make = lambda seed: PatchPolynomialDenoiser(data, [(5, 10), (3, 10)], levels=[0.2, 0.7], seed=seed)  # noqa: E731
    den = make(0)
    out = den(y, levels)
    assert out.shape == y.shape and out.dtype == y.dtype and torch.isfinite(out).all()
    torch.testing.assert_close(out[:2], torch.cat([den(y[:1], 0.2), den(y[1:2], 0.7)]))
    assert torch.equal(make(0)(y, levels), out)
    assert not torch.allclose(make(1)(y, levels), out)
    with pytest.raises(ValueError):
        PatchPolynomialDenoiser(data, [(8, 10)])
    with pytest.raises(ValueError):
        PatchPolynomialDenoiser(data, [(5, 10), (3, 10)])
