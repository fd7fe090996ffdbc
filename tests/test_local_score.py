"""Local-score machines (LS, ELS): analytic limits, a per-pixel loop reference, calibration."""

import math

import pytest
import torch

from archdiff.denoisers import EmpiricalOptimal
from archdiff.denoisers.local_score import (
    PADDINGS,
    LocalScore,
    _blocks,
    calibrate,
    calibration_inputs,
    covering_size,
    local_means,
    window_offsets,
)
from archdiff.errors import UserError
from archdiff.experiments import els_unet_agreement as agreement
from archdiff.experiments.base import Context, check_keys, key
from archdiff.samplers import ddim
from archdiff.schedule import sampling_levels

LEVELS = (0.03, 0.4, 0.97)


def _data(n=4, c=2, h=4, w=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, h, w, generator=g, dtype=torch.float64) * 2 - 1


def _noisy(data, b=3, a=0.4, seed=1):
    g = torch.Generator().manual_seed(seed)
    x0 = data[torch.randint(len(data), (b,), generator=g)]
    return math.sqrt(a) * x0 + math.sqrt(1 - a) * torch.randn(x0.shape, generator=g, dtype=torch.float64)


def test_window_offsets_nest():
    """W_p has p*p offsets [-(p//2), p-1-p//2]^2; its entry order makes every smaller window a prefix."""
    for p in range(1, 8):
        d, entry = window_offsets(p)
        assert len(d) == p * p and set(d.flatten().tolist()) <= set(range(-(p // 2), p - p // 2))
        for q in range(1, p + 1):
            inner = {tuple(o) for o in window_offsets(q)[0].tolist()}
            assert {tuple(o) for o in d[: int((entry <= q).sum())].tolist()} == inner


@pytest.mark.parametrize("padding", PADDINGS)
def test_ls_with_a_whole_image_window_is_the_memorizer(padding):
    """LS whose window covers the image from every pixel (circular: exactly once) = EmpiricalOptimal."""
    data = _data(n=6, h=5, w=5)
    memorizer = EmpiricalOptimal(data)
    ls = LocalScore(data, covering_size(data.shape, padding), equivariant=False, padding=padding)
    for a in LEVELS:
        x = _noisy(data, a=a)
        torch.testing.assert_close(ls(x, a), memorizer(x, a), rtol=0, atol=1e-10)


def test_clipped_els_with_a_whole_image_window_is_the_memorizer():
    """Clipped ELS at 2H - 1: no other position fits the whole image, so only y = x remains."""
    data = _data(n=5, h=4, w=4)
    els = LocalScore(data, covering_size(data.shape, "clipped"), padding="clipped")
    x = _noisy(data, a=0.5)
    torch.testing.assert_close(els(x, 0.5), EmpiricalOptimal(data)(x, 0.5), rtol=0, atol=1e-10)


@pytest.mark.parametrize("padding", PADDINGS)
def test_els_of_patch_size_one_is_the_pixel_marginal_posterior_mean(padding):
    """p = 1: each pixel's posterior mean under the law of one pixel pooled over all images and positions."""
    data = _data(n=3, c=3, h=4, w=6)
    pool = data.permute(0, 2, 3, 1).reshape(-1, 3)  # [N H W, C]: every pixel value of every image
    for a in LEVELS:
        x = _noisy(data, b=2, a=a)
        pixels = x.permute(0, 2, 3, 1).reshape(-1, 3)  # [B H W, C]
        d2 = ((pixels[:, None] - math.sqrt(a) * pool[None]) ** 2).sum(-1)
        expected = torch.softmax(-d2 / (2 * (1 - a)), 1) @ pool
        expected = expected.reshape(2, 4, 6, 3).permute(0, 3, 1, 2)
        torch.testing.assert_close(LocalScore(data, 1, padding=padding)(x, a), expected, rtol=0, atol=1e-10)


def _patch(img, pos, p, padding):
    """The patch values of img [C][H][W] (lists) at pos, or None per offset outside a clipped window."""
    c, h, w = len(img), len(img[0]), len(img[0][0])
    out = []
    for dh in range(-(p // 2), p - p // 2):
        for dw in range(-(p // 2), p - p // 2):
            r, q = pos[0] + dh, pos[1] + dw
            if padding == "circular":
                out.append([img[k][r % h][q % w] for k in range(c)])
            elif 0 <= r < h and 0 <= q < w:
                out.append([img[k][r][q] for k in range(c)])
            else:
                out.append(None if padding == "clipped" else [0.0] * c)
    return out


def _reference(data, x, a, p, padding, equivariant, pixels=None):
    """The machine pixel by pixel: every candidate (i, y) written out, its patch distance summed (at the
    given pixels (h, w) only, when given: the bench times it)."""
    imgs, xs = data.tolist(), x.tolist()
    n, c, h, w = data.shape
    s, v = math.sqrt(a), 1 - a
    out = torch.zeros_like(x)
    positions = [(yh, yw) for yh in range(h) for yw in range(w)]
    for b in range(len(xs)):
        for xh, xw in positions if pixels is None else pixels:
            mine = _patch(xs[b], (xh, xw), p, padding)
            logits, values = [], []
            for i in range(n):
                for y in positions if equivariant else [(xh, xw)]:
                    theirs = _patch(imgs[i], y, p, padding)
                    dist, fits = 0.0, True
                    for u, t in zip(mine, theirs):
                        if u is None:  # clipped: this offset is outside x's image
                            continue
                        if t is None:  # clipped: x's in-image window does not fit at y
                            fits = False
                            break
                        dist += sum((uk - s * tk) ** 2 for uk, tk in zip(u, t))
                    if fits:
                        logits.append(-dist / (2 * v))
                        values.append(data[i, :, y[0], y[1]])
            weights = torch.softmax(torch.tensor(logits, dtype=torch.float64), 0)
            out[b, :, xh, xw] = weights @ torch.stack(values)
    return out


@pytest.mark.parametrize("equivariant", [True, False])
@pytest.mark.parametrize("padding", PADDINGS)
@pytest.mark.parametrize(("shape", "sizes"), [((4, 5), [1, 2, 3, 4, 9]), ((4, 4), [3, 4, 7])])
def test_vectorized_machine_equals_the_pixel_loop(padding, equivariant, shape, sizes):
    """Several sizes at once (even ones, whole-image windows too), in tiles of a few pixels and one image
    and in one tile, = the plain loop."""
    data = _data(n=3, c=2, h=shape[0], w=shape[1])
    x = _noisy(data, b=2, a=0.6)
    expected = [_reference(data, x, 0.6, p, padding, equivariant) for p in sizes]
    for chunk in (7, 2**20):
        out = local_means(data, x, 0.6, sizes, equivariant=equivariant, padding=padding, chunk=chunk)
        for k in range(len(sizes)):
            torch.testing.assert_close(out[k], expected[k], rtol=0, atol=1e-10)


def test_clipped_els_in_blocks_of_pixels_equals_the_pixel_loop():
    """Large clipped windows: blocks of pixels, each compared only with the positions it fits, = the loop."""
    data = _data(n=2, c=1, h=8, w=8)
    x = _noisy(data, b=1, a=0.8)
    assert len(_blocks(x.shape, 7, "cpu")) > 1 and len(_blocks(x.shape, 1, "cpu")) == 1  # 7, 8 in blocks
    out = local_means(data, x, 0.8, [1, 7, 8], padding="clipped")
    for k, p in enumerate([1, 7, 8]):
        torch.testing.assert_close(out[k], _reference(data, x, 0.8, p, "clipped", True), rtol=0, atol=1e-10)


def test_circular_els_commutes_with_circular_shifts():
    """With circular padding every position is alike: shifting the input shifts the output."""
    data = _data(n=3, c=1, h=6, w=6)
    els = LocalScore(data, 3, padding="circular")
    x = _noisy(data, a=0.3)
    torch.testing.assert_close(els(x.roll((2, -1), (2, 3)), 0.3), els(x, 0.3).roll((2, -1), (2, 3)),
                               rtol=0, atol=1e-10)


def test_machine_is_a_denoiser():
    """dtype kept; mixed levels = per-level calls; the patch of a level is the nearest level's in log-SNR."""
    data = _data(n=4, c=1, h=4, w=4)
    els = LocalScore(data, {0.9: 3, 0.1: 1})
    x = _noisy(data, b=4).float()
    levels = torch.tensor([0.1, 0.9, 0.1, 0.8], dtype=torch.float64)
    out = els(x, levels)
    assert out.dtype == torch.float32 and out.shape == x.shape
    assert [els.patch_at(a) for a in (0.95, 0.6, 0.3, 0.01)] == [3, 3, 1, 1]
    torch.testing.assert_close(out[1], els(x[1:2], 0.9)[0])
    torch.testing.assert_close(out[3], LocalScore(data, 3)(x[3:4], 0.8)[0])


def test_calibration_recovers_a_known_schedule():
    """Calibrated against an ELS machine with known sizes, the calibration finds them (error 0 there)."""
    data = _data(n=4, c=1, h=6, w=6)
    truth = {0.2: 5, 0.7: 3}
    network = LocalScore(data, truth)
    inputs = [(a, _noisy(data, b=2, a=a, seed=k)) for k, a in enumerate(truth)]
    cal = calibrate(data, network, inputs, [1, 3, 5, 7])
    assert cal.schedule() == truth
    assert float(cal.errors.min(1).values.max()) < 1e-20 < float(cal.errors.max())


def test_calibration_inputs_are_the_sampling_trajectory():
    """The inputs at each level are the states DDIM passes to the network; stepping on reaches its sample."""
    data = _data(n=4, c=1, h=4, w=4)
    memorizer = EmpiricalOptimal(data)
    levels = sampling_levels("cosine", 4)
    x_T = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    inputs = calibration_inputs(memorizer, x_T, levels)
    assert [a for a, _ in inputs] == levels[:-1].tolist() and torch.equal(inputs[0][1], x_T)
    a, last = inputs[-1]
    torch.testing.assert_close(ddim(memorizer, last, levels[-2:]), ddim(memorizer, x_T, levels))


def test_els_unet_agreement_runs_end_to_end(tmp_path):
    """A tiny run: each variant's agreements, calibrated sizes among the candidates, the claims, figures."""
    exp = agreement.EXPERIMENT
    cfg = {**exp.config("quick"), "n_train": 12, "image_size": 8, "base_channels": 4, "fewer_channels": 2,
           "epochs": 2, "steps": 3, "n_samples": 6, "grid_columns": 3, "calibration_samples": 2,
           "calibration_steps": 2, "patch_sizes": [1, 3, 15], "bootstrap": 50}
    ctx = Context(cfg, "quick", 0, torch.device("cpu"), tmp_path, data="digits", progress=False)
    result = exp.run(ctx)
    check_keys(result.metrics)
    # 8 px images, fields 20 / 7 / 48 px (num_blocks 1 / 0 / 2): only less pooling (7 < 8) and circular apply
    assert [c.id for c in result.claims] == [
        "machine-beats-baselines-less-pooling", "machine-beats-baselines-circular-padding",
        "machine-copies-as-network", "patch-size-grows-with-field", "circular-machine-for-circular-unet"]
    assert all(math.isfinite(c.measured) for c in result.claims)
    for name in ("more_pooling", "default", "less_pooling", "fewer_channels", "circular_padding"):
        for model in ("els", "ls", "memorizer", "linear"):
            for q in ("corr", "centered_corr", "corr_chance", "centered_corr_chance"):
                assert -1 <= result.metrics[f"{q}_median.{name}.{model}"] <= 1
        whole = 8 if name.startswith("circular") else 15  # the largest candidate, capped at the covering size
        assert result.metrics[f"patch_size.{name}.els.level_1"] in (1, 3, whole)
    assert "corr_median.circular_padding.els_clipped" in result.metrics
    assert all((tmp_path / f).is_file() for f in result.figures)
    assert [len(t.rows) for t in result.tables] == [6, 5]  # the variants (+ Kamb & Ganguli's row)


def _scope_metrics(**copies: tuple[float, float]) -> dict:
    """Metrics of the five variants at 16 px (fig1's quick fields) with the given copy fractions."""
    fields = {"more pooling": 48, "default": 20, "less pooling": 7, "fewer channels": 20,
              "circular padding": 20}
    m = {"image_size": 16}
    for v, f in fields.items():
        net, els = copies.get(key(v), (0.0, 0.0))
        m |= {key("receptive_field", v): f, key("copy_fraction", v, "network"): net,
              key("copy_fraction", v, "els"): els}
    return m


def test_the_theory_applies_to_narrow_fields_and_circular_padding_whatever_the_network_did():
    assert agreement.scope(7, 16, False) == (True, "field narrower than the image")
    assert agreement.scope(20, 16, True) == (True, "circular padding")
    assert agreement.scope(7, 16, True)[0] and not agreement.scope(16, 16, False)[0]
    assert not agreement.scope(20, 16, False)[0] and not agreement.scope(48, 16, False)[0]


def test_a_bad_zero_padding_machine_is_refused_before_any_training(tmp_path):
    cfg = {**agreement.EXPERIMENT.config("quick"), "zero_padding_machine": "circular"}
    ctx = Context(cfg, "quick", 0, torch.device("cpu"), tmp_path, data="digits", progress=False)
    with pytest.raises(UserError, match="zero_padding_machine = 'circular': use one of clipped, zeros"):
        agreement.EXPERIMENT.run(ctx)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("copies, holds", [({}, True), ({"more_pooling": (0.9, 1.0)}, True),
                                           ({"more_pooling": (0.9, 0.1)}, False),
                                           ({"default": (0.0, 0.6)}, False)])
def test_the_regime_claim_fails_when_machine_and_network_copy_differently(copies, holds):
    m = _scope_metrics(**copies)
    variants = ["more pooling", "default", "less pooling", "fewer channels", "circular padding"]
    assert agreement.copies_as_network(m, variants).holds is holds


@pytest.mark.gpu
@pytest.mark.parametrize("padding", PADDINGS)
def test_the_machine_on_a_gpu_equals_it_on_the_cpu(padding):
    """Every padding, ELS and LS, several sizes in one pass: the same float64 numbers on CUDA."""
    data = _data(n=5, c=3, h=9, w=9)
    x = _noisy(data, b=3)
    for eq in (True, False):
        cpu = local_means(data, x, 0.4, [1, 3, 9, 17], equivariant=eq, padding=padding, chunk=5000)
        gpu = local_means(data.cuda(), x.cuda(), 0.4, [1, 3, 9, 17], equivariant=eq, padding=padding,
                          chunk=5000)
        torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-9, atol=1e-12)

