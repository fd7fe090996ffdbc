"""The GPU script's rehearsal: ``bench/gpu_paper.py --smoke`` runs every section on the CPU and writes
every key the GPU run must report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"patch_poly_10step_s", "patch_poly_peak_gb", "global_poly_50step_s", "linear_10step_s",
        "perlevel_unet_img_per_s", "plainloop_unet_img_per_s", "fig1_perlevel_projected_min",
        "fig1_time_projected_min", "training_img_per_s", "experiments", "skipped", "total_s", "els_step_s",
        "ls_step_s", "memorizer_step_s"}


def test_smoke_run_writes_every_key(tmp_path):
    """The one-command wrapper (GPU tests, then the script) rehearsed with --smoke on the CPU."""
    script = str(ROOT / "bench" / "gpu_paper.sh")
    subprocess.run(["bash", script, str(tmp_path), "--smoke", "--device", "cpu"], check=True,
                   capture_output=True, timeout=600, cwd=ROOT, env={**os.environ, "PYTHON": sys.executable})
    (report,) = tmp_path.glob("*-smoke.json")
    with tarfile.open(tmp_path / f"{report.stem}-runs.tar.gz") as tar:
        assert "fig2-linear-gmm/metrics.json" in tar.getnames()
    assert "skipped" in (tmp_path / "gpu_tests.log").read_text()  # the GPU tests ran (and skip on a CPU)
    data = json.loads(report.read_text())
    assert KEYS <= set(data)
    assert all(data[k] > 0 for k in KEYS - {"experiments", "skipped", "training_img_per_s"})
    assert all(isinstance(v, float) and v > 0 for v in data["training_img_per_s"].values())  # none failed
    assert data["experiments"]["fig2-linear-gmm"]["failing"] == []
    assert report.with_suffix(".md").read_text().startswith("| key | value |")
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically


def test_paper_run_without_data_is_refused(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_paper.py"), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "--data" in done.stderr
    assert not list(tmp_path.iterdir())
