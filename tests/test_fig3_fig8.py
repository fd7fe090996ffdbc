"""Small end-to-end runs of fig3 and fig8 through the runner: theorem-backed claims, config.toml as run."""

from __future__ import annotations

import tomllib

from archdiff.denoisers.patch import PAPER_PATCHES, PAPER_WIDTHS, scaled_schedule
from archdiff.experiments import get
from archdiff.runner import run_experiment


def test_fig3_tiny_run_keeps_theorem_5(tmp_path):
    """Degree 1 (exact fit) is the linear denoiser, and a 7-gon pair matched to order 6 gives the same
    degree-3 samples: both hold exactly, at any size."""
    tiny = {"n_train": 300, "n_samples": 200, "n_samples_exact": 400, "degrees": [1, 3], "steps": 8,
            "width": 32}
    rec = run_experiment(get("fig3-poly-gmm"), out=tmp_path, overrides=tiny, progress=False)
    claims = {c["id"]: c for c in rec["claims"]}
    assert claims["deg1-equals-linear"]["holds"] and claims["thm5-same-7gon"]["holds"]
    assert claims["thm5-differ-4gon"]["holds"]
    assert rec["metrics"]["sw_null.threshold"] > rec["metrics"]["sw_null.mean"] > 0


def test_fig8_config_toml_records_the_schedule_that_ran(tmp_path):
    """The paper's 64-pixel patch schedule is scaled to the 8 x 8 digits; config.toml says so."""
    tiny = {"data": "digits", "n_train": 40, "n_samples": 8, "global_width": 32,
            "widths": [16, 16, 8, 8, 8, 8, 4, 4, 4, 4]}
    rec = run_experiment(get("fig8-patch-poly"), out=tmp_path, overrides=tiny, progress=False)
    saved = tomllib.loads((tmp_path / "fig8-patch-poly" / "config.toml").read_text())
    expected = scaled_schedule(8, PAPER_PATCHES, tiny["widths"], 64)
    assert saved["resolved"]["patch_schedule"] == [list(s) for s in expected]
    assert saved["resolved"]["n_train"] == 40 and saved["resolved"]["data_shape"] == [1, 8, 8]
    assert saved["config"]["widths"] == tiny["widths"] and saved["config"]["patches"] == list(PAPER_PATCHES)
    assert len(PAPER_WIDTHS) == len(expected) and {c["id"] for c in rec["claims"]} == {
        "patch-samples-not-copies", "locality-changes-samples", "not-exploded-global-degree-3",
        "not-collapsed-global-degree-3", "not-exploded-patch-degree-3", "not-collapsed-patch-degree-3"}
