"""UNet and image MLP: receptive field vs gradients, equivariance, homogeneity, shapes."""

import pytest
import torch

from archdiff.denoisers.networks.image_mlp import ImageMLP
from archdiff.denoisers.networks.unet import UNet, receptive_field, receptive_interval


def _support(grad: torch.Tensor, dim: int) -> tuple[int, int]:
    idx = (grad != 0).any(dim=dim).nonzero().flatten()
    return int(idx.min()), int(idx.max())


@pytest.mark.parametrize("num_blocks", [0, 1, 2, 3])
def test_receptive_field_matches_gradient_support(num_blocks):
    """The analytic interval of each output pixel equals the support of its input gradient."""
    torch.manual_seed(num_blocks)
    period = 2**num_blocks
    size = period * (receptive_field(num_blocks) // period + 3)  # the field never reaches the border
    net = UNet(1, base_channels=4, num_blocks=num_blocks, norm="none").eval()
    x = torch.randn(1, 1, size, size, requires_grad=True)
    y = net(x)[0, 0]
    widths = []
    for p in range(size // 2, size // 2 + period):  # every position modulo the pooling period
        (g,) = torch.autograd.grad(y[p, p], x, retain_graph=True)
        lo, hi = receptive_interval(num_blocks, p)
        assert _support(g[0, 0], 1) == (lo, hi)  # rows
        assert _support(g[0, 0], 0) == (lo, hi)  # columns
        widths.append(hi - lo + 1)
    assert max(widths) == receptive_field(num_blocks)


def _trained_stats(net: UNet, shape, seed=0) -> UNet:
    """Run a few training-mode passes so the running normalization statistics are not the defaults."""
    g = torch.Generator().manual_seed(seed)
    net.train()
    with torch.no_grad():
        for _ in range(3):
            net(torch.randn(shape, generator=g) * 2 + 0.5)
    return net.eval()


def test_circular_padding_is_equivariant_to_circular_shifts():
    """Circular padding: f(shift x) = shift f(x) for shifts by multiples of 2**num_blocks; zeros breaks it."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 16, 16)
    shift = lambda t: torch.roll(t, shifts=(4, -8), dims=(-2, -1))  # noqa: E731
    errors = {}
    for mode in ("circular", "zeros"):
        net = _trained_stats(UNet(3, base_channels=8, num_blocks=2, padding_mode=mode, norm="batch"), x.shape)
        with torch.no_grad():
            errors[mode] = float((net(shift(x)) - shift(net(x))).abs().max() / net(x).abs().max())
    assert errors["circular"] < 1e-5
    assert errors["zeros"] > 1e-2


@pytest.mark.parametrize("padding_mode", ["zeros", "circular", "reflect"])
def test_shapes_and_channels(padding_mode):
    """Output has out_channels and the input's spatial size; a size not divisible by 2**L is refused."""
    net = UNet(3, out_channels=2, base_channels=4, num_blocks=2, padding_mode=padding_mode)
    assert net(torch.randn(2, 3, 12, 8)).shape == (2, 2, 12, 8)
    with pytest.raises(ValueError):
        net(torch.randn(1, 3, 10, 8))


def test_biasfree_unet_is_homogeneous():
    """Bias-free convs + bias-free batch norm (eval): f(c x) = c f(x); ordinary batch norm breaks it."""
    torch.manual_seed(0)
    x = torch.randn(2, 1, 8, 8)
    gaps = {}
    for norm in ("biasfree", "batch"):
        net = _trained_stats(UNet(1, base_channels=8, num_blocks=2, norm=norm, bias=False), x.shape)
        with torch.no_grad():
            for p in net.parameters():  # move gains / BN affine off their defaults
                p.add_(0.1 * torch.randn_like(p))
            y = net(x)
            gaps[norm] = float((net(3.0 * x) - 3.0 * y).abs().max() / (3.0 * y).abs().max())
    assert gaps["biasfree"] < 1e-5
    assert gaps["batch"] > 1e-2


def test_biasfree_norm_has_no_additive_term():
    """Eval-mode bias-free norm is a per-channel scaling: it maps zero to zero and is linear."""
    from archdiff.denoisers.networks.unet import BiasFreeBatchNorm

    norm = BiasFreeBatchNorm(4)
    norm(torch.randn(8, 4, 5, 5) * 3 + 1)  # training mode: updates the running SD
    norm.eval()
    a, b = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    assert torch.equal(norm(torch.zeros(1, 4, 5, 5)), torch.zeros(1, 4, 5, 5))
    torch.testing.assert_close(norm(a + 2 * b), norm(a) + 2 * norm(b))
    assert not torch.allclose(norm.running_sd, torch.ones_like(norm.running_sd))


@pytest.mark.parametrize("width", [3, 50])
def test_image_mlp_shape_width_range(width):
    """Shape preserved, hidden width as asked, nine hidden layers, outputs strictly inside (-1, 1)."""
    torch.manual_seed(0)
    net = ImageMLP((1, 6, 5), width=width)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 10
    assert all(m.out_features == width for m in linears[:-1]) and linears[-1].out_features == 30
    y = net(100 * torch.randn(4, 1, 6, 5))
    assert y.shape == (4, 1, 6, 5)
    assert bool((y.abs() <= 1).all())


def test_image_mlp_outputs_span_at_most_width_dimensions():
    """Before the Tanh, outputs lie in an affine set of dimension <= width (the bottleneck rank)."""
    torch.manual_seed(0)
    net = ImageMLP((1, 8, 8), width=5)
    with torch.no_grad():
        pre = net.decoder[0](net.encoder(torch.randn(200, 64)))  # [200, 64]
    s = torch.linalg.svdvals(pre - pre.mean(0))
    assert int((s > 1e-4 * s[0]).sum()) <= 5


def test_biasfree_norm_under_vmap_matches_separate_modules():
    """Stacked copies run under vmap update their running SDs exactly as separate modules do."""
    from torch.func import functional_call, stack_module_state, vmap

    from archdiff.denoisers.networks.unet import BiasFreeBatchNorm

    torch.manual_seed(0)
    mods = [BiasFreeBatchNorm(3), BiasFreeBatchNorm(3)]
    x = torch.randn(2, 5, 3, 4, 4) * torch.tensor([1.0, 3.0]).view(2, 1, 1, 1, 1)
    params, buffers = stack_module_state(mods)
    out = vmap(lambda p, b, xb: functional_call(mods[0], (p, b), (xb,)))(params, buffers, x)
    for i, m in enumerate(mods):
        torch.testing.assert_close(out[i], m(x[i]))
        torch.testing.assert_close(buffers["running_sd"][i], m.running_sd)
