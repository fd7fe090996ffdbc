"""fig1-unet-variants and fig9-mlp-width: the location bound, the variants, and tiny end-to-end runs."""

import torch

from archdiff.denoisers.networks import NetSpec
from archdiff.denoisers.trained import TimeConditionedDenoiser
from archdiff.experiments import fig1_unet_variants as fig1
from archdiff.experiments import fig9_mlp_width as fig9
from archdiff.experiments.base import Context, check_keys, key
from archdiff.samplers import ddim, initial_noise
from archdiff.schedule import sampling_levels


def test_periodic_part_is_the_best_periodic_correlation():
    """corr(p, m) <= corr(periodic_part(m), m) for every P-periodic p (orthogonal projection)."""
    g = torch.Generator().manual_seed(0)
    m = torch.randn(1, 8, 8, generator=g) + torch.linspace(0, 3, 8)[:, None]  # some large-scale structure
    mp = fig1.periodic_part(m, 4)
    torch.testing.assert_close(fig1.periodic_part(mp, 4), mp)  # a projection
    torch.testing.assert_close(torch.roll(mp, (4, -4), (-2, -1)), mp)  # P-periodic
    bound = fig1.correlation(mp, m)
    for _ in range(50):
        tile = torch.randn(1, 4, 4, generator=g)
        p = tile.repeat(1, 2, 2) + 0.1 * mp  # random periodic images, some leaning toward mp
        assert fig1.correlation(p, m) <= bound + 1e-12


def test_circular_unet_sampler_commutes_with_shifts():
    """The premise of the location bound: DDIM with a circular UNet maps shifted noise to shifted samples."""
    kw = dict(in_channels=1, base_channels=4, num_blocks=1, padding_mode="circular", norm="batch")
    spec = NetSpec("unet", kw)
    torch.manual_seed(0)
    state = spec.build(level_input=True).state_dict()
    den = TimeConditionedDenoiser(spec, state, (1, 8, 8))
    x_T = initial_noise(3, (1, 8, 8), 0)
    levels = sampling_levels("cosine", 5)
    shift = lambda t: torch.roll(t, (2, 4), (-2, -1))  # noqa: E731 -- multiples of 2**num_blocks
    torch.testing.assert_close(ddim(den, shift(x_T), levels), shift(ddim(den, x_T, levels)))


def test_variants_change_one_thing_each():
    """Each variant differs from the default in exactly one setting; more pooling widens the field."""
    c = fig1.EXPERIMENT.config("paper")
    v = fig1.variants(c, 3)
    default = v.pop("default")
    for kw in v.values():
        assert sum(kw[k] != default[k] for k in default) == 1
    fields = [fig1.receptive_field(v[k]["num_blocks"]) for k in ("more pooling", "less pooling")]
    assert fields[0] > fig1.receptive_field(default["num_blocks"]) > fields[1]


def test_widest_mlp_width_equals_training_set_size():
    """At both scales the widest MLP has one hidden unit per training image."""
    for scale in ("quick", "paper"):
        assert fig9.widths(fig9.EXPERIMENT.config(scale), 137)[0] == 137


def _tiny(exp, tmp_path, **overrides) -> Context:
    cfg = {**exp.config("quick"), "epochs": 2, "steps": 3, "n_samples": 6, "grid_columns": 3, **overrides}
    return Context(cfg, "quick", 0, torch.device("cpu"), tmp_path, data="digits", progress=False)


def test_fig1_runs_end_to_end(tmp_path):
    """A tiny fig1 run returns every variant's metrics, the five claims and both figures."""
    ctx = _tiny(fig1.EXPERIMENT, tmp_path, n_train=12, image_size=8, base_channels=4, fewer_channels=2)
    result = fig1.run(ctx)
    check_keys(result.metrics)
    assert len(result.claims) == 5
    for name in fig1.variants(ctx.config, 1):
        assert 0 <= result.metrics[key("copy_fraction", name)] <= 1
    assert result.metrics["receptive_field.more_pooling"] == fig1.receptive_field(2)
    assert all((tmp_path / f).is_file() for f in result.figures)


def test_fig9_runs_end_to_end(tmp_path):
    """A tiny fig9 run: widths from the data size, rank and copy metrics, claims and figures."""
    ctx = _tiny(fig9.EXPERIMENT, tmp_path, n_train=20, image_size=None)
    result = fig9.run(ctx)
    check_keys(result.metrics)
    assert result.metrics["widths"] == [20, 4, 1]
    assert len(result.claims) == 3
    assert all((tmp_path / f).is_file() for f in result.figures)


def test_correlation_se_matches_the_spread_over_independent_sample_sets():
    """The jackknife SE of corr(mean sample, target) agrees with the SD of that correlation over many
    independent sample sets (an independent computation), within 30 %."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 8, 8, generator=g)
    pattern = 0.3 * target + 0.5 * torch.randn(1, 8, 8, generator=g)

    def draw(n):
        return pattern + torch.randn(n, 1, 8, 8, generator=g)

    spread = torch.tensor([fig1.correlation(draw(256).mean(0), target) for _ in range(300)]).std()
    se = torch.tensor([fig1.correlation_se(draw(256), target) for _ in range(20)]).mean()
    assert abs(float(se / spread) - 1) < 0.3


def test_time_conditioned_figures_differ_from_the_paper_settings_only_in_conditioning():
    """fig1 / fig9 at paper scale train one network per level; their -time twins the same figure with one
    time-conditioned network, every other setting equal, so the two modes compare on the same data."""
    from archdiff.experiments import registry

    reg = registry()
    for exp in (fig1.EXPERIMENT, fig9.EXPERIMENT):
        twin = reg[f"{exp.id}-time"]
        paper = exp.config("paper")
        assert paper["conditioning"] == "per-level"
        assert twin.config("paper") == {**paper, "conditioning": "time"} and twin.run is exp.run
