"""The GPU script's rehearsal: ``bench/gpu_paper.py --smoke`` runs every section on the CPU and writes
every key the GPU run must report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEYS = {"patch_poly_10step_s", "patch_poly_peak_gb", "global_poly_50step_s", "linear_10step_s",
        "perlevel_unet_img_per_s", "plainloop_unet_img_per_s", "fig1_perlevel_projected_min",
        "fig1_time_projected_min", "training_img_per_s", "experiments", "skipped", "total_s"}


def test_smoke_run_writes_every_key(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "bench" / "gpu_paper.py"), "--smoke", "--device", "cpu",
                    "--out", str(tmp_path)], check=True, capture_output=True, timeout=600)
    (report,) = tmp_path.glob("*-smoke.json")
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
