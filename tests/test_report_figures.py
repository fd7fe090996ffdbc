"""What a reader of the report sees: every figure titled, legible at the report's width, without blank
bands; claim statements that read correctly; fig6's moment thresholds able to fail; the README's Python
API examples running and printing numbers with their reference beside them."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import pytest
import torch
from matplotlib.text import Text

from archdiff import metrics, plots, report, seeding, sweep
from archdiff.denoisers import LinearDenoiser
from archdiff.experiments import fig1_unet_variants as fig1
from archdiff.experiments import fig5_linear_rank_images as fig5
from archdiff.experiments import fig6_linear_retrain as fig6
from archdiff.experiments import get
from archdiff.experiments.base import Table
from archdiff.experiments.figures import plural
from archdiff.runner import run_experiment
from archdiff.theory import GaussianPrediction

ROOT = Path(__file__).resolve().parents[1]
TINY = {  # every kind of figure (scatter, grid, nearest, line) at a size that runs in seconds
    "fig2-linear-gmm": {"n_train": 500, "n_samples": 500, "steps": [10, 50]},
    "fig3-poly-gmm": {"n_train": 300, "n_samples": 200, "n_samples_exact": 400, "degrees": [1, 3], "steps": 8,
                      "width": 32},
    "fig5-linear-rank-images": {"data": "digits", "n_train": 200, "ranks": [3, 8], "n_samples": 200,
                                "fine_steps": 50},
    "fig6-linear-retrain": {"data": "digits", "n_train": 200, "n_samples": 100, "fine_steps": 150},
    "fig7-poly-images": {"data": "digits", "n_train": 60, "degrees": [1, 27], "width": 64, "n_samples": 16,
                         "steps": 6},
    "thm4-sgd-linear": {"n_train": 200, "epochs": 3},
}


def layout(fig) -> dict:
    """What a reader sees of a figure drawn at plots.DPI: its title, width, smallest text, smallest image
    thumbnail, blank space above / below its image thumbnails, and whether any text leaves the canvas."""
    fig.canvas.draw()
    width, height = fig.get_figwidth() * plots.DPI, fig.get_figheight() * plots.DPI
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]
    labels = [*fig.texts, *(t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label)),
              *(t for legend in [*fig.legends, *(ax.get_legend() for ax in fig.axes)] if legend
                for t in legend.get_texts())]  # all text but tick labels (those out of view are not drawn)
    labels = [t for t in labels if t.get_visible() and t.get_text().strip()]
    suptitle = getattr(fig, "_suptitle", None)
    title = suptitle.get_text() if suptitle else (fig.axes[0].get_title() if len(fig.axes) == 1 else "")
    cells = [ax.get_position() for ax in fig.axes if ax.images]
    title_px = suptitle.get_window_extent().height if suptitle else 0.0
    return {
        "title": title, "width": width,
        "min_text_px": min(t.get_fontsize() for t in texts) * plots.DPI / 72,
        "min_cell_px": min((c.width * width for c in cells), default=None),
        "blank_above_px": (1 - max(c.y1 for c in cells)) * height - title_px if cells else 0.0,
        "blank_below_px": min(c.y0 for c in cells) * height if cells else 0.0,
        "clipped": [t.get_text() for t in labels if not _inside(t.get_window_extent(), width, height)],
    }


def _inside(box, width: float, height: float) -> bool:
    """Whether a text's box lies on the canvas (1 px of slack)."""
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= width + 1 and box.y1 <= height + 1


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, dict]:
    """Run each TINY experiment, keeping the layout and the figure objects of every PNG it writes."""
    saved: dict[str, dict] = {}
    original = plots._save

    def keep(fig, path):
        saved[Path(path).name] = {**layout(fig), "fig": fig}  # the names differ across experiments
        return original(fig, path)

    out = tmp_path_factory.mktemp("runs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(plots, "_save", keep)
        records = {i: run_experiment(get(i), "quick", out=out, overrides=o, progress=False)
                   for i, o in TINY.items()}
    return {"figures": saved, "records": records}


def test_every_figure_is_titled_legible_and_fits_the_report(drawn):
    names = [name for rec in drawn["records"].values() for name in rec["figures"]]  # those in the report
    assert len(names) >= 12 and set(names) <= set(drawn["figures"])
    for name in names:
        f = drawn["figures"][name]
        assert len(f["title"]) > 20, name
        assert f["width"] <= plots.PAGE_PX + 0.5, name  # so the report shows it at its own size
        assert f["min_text_px"] >= plots.MIN_TEXT_PX, name
        assert not f["clipped"], (name, f["clipped"])
        if f["min_cell_px"] is not None:  # an image grid: large thumbnails, no blank bands
            assert f["min_cell_px"] >= plots.MIN_CELL_PX, name
            assert f["blank_above_px"] <= 0.35 * plots.DPI and f["blank_below_px"] <= 0.1 * plots.DPI, name


def test_coinciding_lines_stay_visible():
    """fig2_steps: the 3GMM and 2GMM lines are equal; they differ in marker, line style and marker size."""
    fig = plots.line_figure([1, 2, 3], {"a": [1.0, 2.0, 3.0], "b": [1.0, 2.0, 3.0]}, "x", "y", (False, False),
                            "t", {}, (6.4, 4.2))
    a, b = fig.axes[0].get_lines()
    assert a.get_marker() != b.get_marker() and a.get_linestyle() != b.get_linestyle()
    assert b.get_markersize() > a.get_markersize() and b.get_markerfacecolor() == "none"


def test_thm5_panels_draw_the_polygons_and_say_what_they_show(drawn):
    fig = drawn["figures"]["fig3_thm5.png"]["fig"]
    for ax in fig.axes:
        samples, marks = ax.collections
        assert ax.get_title().startswith("samples")
        radii = torch.tensor(marks.get_offsets()).norm(dim=1)
        assert radii.round(decimals=6).unique().tolist() == [1.0, 2.0]  # the two concentric n-gons
        assert len(samples.get_offsets()) > len(marks.get_offsets())


def test_labels_say_what_numbers_are():
    assert "(3.00 x image side)" in fig1.row_label("more pooling", 48, 16)
    assert "99 = N - 1" in fig5.full_label(99, 100) and "pixel count" in fig5.full_label(64, 200)
    assert (plural(1, "block"), plural(2, "block"), plural(2, "copy", "copies")) == \
        ("1 block", "2 blocks", "2 copies")


def test_claim_statements_read_correctly(drawn):
    statements = [c["statement"] for rec in drawn["records"].values() for c in rec["claims"]]
    m = {"receptive_field.more_pooling": 48, "receptive_field.default": 20, "image_size": 16,
         "hf_energy_se.fewer_channels": 0.01, "hf_energy_se.default": 0.01, "hf_energy.fewer_channels": 0.1,
         "hf_energy.default": 0.2, "copy_fraction.more_pooling": 0.9, "copy_fraction.default": 0.0,
         "location_signal.circular_padding": 0.01, "location_signal.default": 0.9,
         "location_signal_se.circular_padding": 0.01, "location_signal_se.default": 0.01}
    statements += [c.statement for c in fig1.claims(m, {**fig1.QUICK, "num_blocks": 1})]
    for s in statements:
        assert not re.search(r"(?<![\d./])1 (blocks|samples|images|steps|seeds|sets|ones|levels)\b", s), s
        assert not re.search(r"'s (its|their|the) ", s), s  # "the first model's its sampled law"
    fig2 = {c["id"]: c["statement"] for c in drawn["records"]["fig2-linear-gmm"]["claims"]}
    for claim in ("mean-matches-data", "cov-matches-data"):
        assert "3GMM" in fig2[f"{claim}-3GMM"] and "2GMM" in fig2[f"{claim}-2GMM"]
        assert fig2[f"{claim}-3GMM"] != fig2[f"{claim}-2GMM"]


def test_location_signal_is_one_for_the_training_mean_and_zero_for_periodic_samples():
    """fig1's location signal: 1 for samples equal to the training mean, 0 in expectation for samples whose
    law is periodic, and its standard error the spread of the signal over independent sample sets."""
    g = torch.Generator().manual_seed(0)
    target = torch.randn(1, 8, 8, generator=g, dtype=torch.float64) + torch.linspace(0, 2, 8)[:, None]
    assert fig1.location_signal(target.expand(5, 1, 8, 8), target, 4)[0] == pytest.approx(1.0)
    tile = torch.randn(1, 4, 4, generator=g, dtype=torch.float64).repeat(1, 2, 2)

    def periodic(n: int) -> torch.Tensor:  # a periodic image plus noise of a stationary law
        return tile + torch.randn(n, 1, 8, 8, generator=g, dtype=torch.float64)

    draws = torch.tensor([fig1.location_signal(periodic(200), target, 4) for _ in range(300)])
    assert abs(draws[:, 0].mean()) < 3 * draws[:, 0].std() / 300**0.5  # unbiased: 0 in expectation
    assert abs(float(draws[:, 1].mean() / draws[:, 0].std()) - 1) < 0.15  # the SE is the spread


def test_report_says_how_each_claim_is_decided():
    table = report._claims_table([{"id": "a", "statement": "s", "measured": 0.4, "threshold": 0.5,
                                   "comparison": "<=", "holds": True}])
    assert "&le; 0.5" in table
    assert f"max-width:{plots.PAGE_PX}px" in report.STYLE


def test_an_experiments_table_reaches_the_report_escaped_and_rounded():
    """A Result's table goes through the run's record into its section, cells escaped, floats 4 digits."""
    t = Table("r <by> variant", ["variant", "r"], [["a<b", 0.123456], ["c", 2]])
    html = report._section({"experiment": "x", "title": "t", "paper": "p", "scale": "quick", "seconds": 1.0,
                            "tables": [t.to_dict()]}, Path("."), "", {})
    assert "r &lt;by&gt; variant" in html and "<td>a&lt;b</td><td>0.1235</td>" in html
    with pytest.raises(ValueError, match="2 cells"):
        Table("bad", ["a", "b"], [["only one"]])


@pytest.fixture(scope="module")
def faces_like() -> GaussianPrediction:
    """N(mu, Sigma) of 100 images, D = 400, with a face-like spectrum: eigenvalue i ~ 1 / i (LFW's first 5
    directions hold 55 % of the variance; these 44 %)."""
    g = torch.Generator().manual_seed(0)
    scales = torch.arange(1, 401, dtype=torch.float64) ** -0.5
    data = (torch.randn(100, 400, generator=g, dtype=torch.float64) * scales).reshape(100, 1, 20, 20)
    return GaussianPrediction.of(LinearDenoiser.fit(data.float()))


def _claims(synthetic: torch.Tensor, target: GaussianPrediction) -> dict[str, bool]:
    """fig6's moment claims for a second model fitted on ``synthetic``: id -> holds."""
    null = metrics.moment_null(target, synthetic.shape[0], seeding.generator(1, "null"))
    errors = metrics.moment_errors(synthetic, target)
    claims = fig6.moment_claims(errors, null, "the target", 10, synthetic.shape[0])
    return {c.id.split("@")[0]: c.holds for c in claims}


def test_fig6_moment_claims_hold_for_the_right_law_and_fail_for_wrong_ones(faces_like):
    t, n = faces_like, 100
    g = seeding.generator(2, "draws")
    assert _claims(t.sample(n, g), t) == {"mean-reproduced": True, "cov-reproduced": True}
    wrong = {"rank 1": GaussianPrediction(t.mean, t.eigvecs[:, :1], t.eigvals[:1], t.shape),
             "covariance x 2": GaussianPrediction(t.mean, t.eigvecs, 2 * t.eigvals, t.shape),
             "covariance / 2": GaussianPrediction(t.mean, t.eigvecs, t.eigvals / 2, t.shape)}
    for name, law in wrong.items():
        synthetic = law.sample(n, g)
        assert not _claims(synthetic, t)["cov-reproduced"], name
        # the threshold it replaces, 4x the sampling RMS, let this wrong model pass
        rms = metrics.covariance_error_scale(t.eigvals, n)
        assert metrics.moment_errors(synthetic, t)[1] <= 4 * rms, name
    shift = 0.5 * t.eigvals.sum().sqrt() * t.eigvecs[:, 3]  # half the data's scale
    shifted = GaussianPrediction(t.mean + shift, t.eigvecs, t.eigvals, t.shape)
    assert not _claims(shifted.sample(n, g), t)["mean-reproduced"]


def _python_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text().split("## The Python API", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", text, re.S)


def test_readme_example_prints_numbers_beside_their_reference(capsys):
    namespace: dict = {}
    exec(compile(_python_blocks()[0], "README.md", "exec"), namespace)
    floor, linear, cubic = namespace["floor"], namespace["linear_distance"], namespace["distance"]
    assert linear < 1.5 * floor < cubic / 3  # Theorem 3: the linear samples are the Gaussian, the cubic's not
    assert abs(namespace["copies"] - namespace["chance"]) < 0.1  # the cubic copies about as often as chance
    printed = capsys.readouterr().out
    assert f"linear {linear:.2f}, cubic {cubic:.2f} (noise floor {floor:.2f})" in printed
    readme = (ROOT / "README.md").read_text()
    assert f"`linear {linear:.2f}, cubic {cubic:.2f} (noise floor {floor:.2f})`" in readme
    copies, chance = namespace["copies"], namespace["chance"]
    assert f"cubic {copies:.2f}, new draws of the data's distribution {chance:.2f}`" in readme


def test_readme_experiment_example_runs(tmp_path, monkeypatch):
    """The second example imports what it uses: it runs fig2 and calls sweep.reproduce validly."""
    calls, signature = [], inspect.signature(sweep.reproduce)
    monkeypatch.setattr(sweep, "reproduce", lambda *a, **k: calls.append(signature.bind(*a, **k)))
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_blocks()[1], "README.md", "exec"), {})
    assert json.loads((tmp_path / "runs" / "fig2-linear-gmm" / "metrics.json").read_text())["claims"]
    assert calls and calls[0].arguments["only"] == ["fig7-poly-images"]
