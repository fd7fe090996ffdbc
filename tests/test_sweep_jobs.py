"""Sweeps as jobs through submitit's local executor: one job per run folder, then one summary; a failing
job is reported with its run and log folder."""

from __future__ import annotations

import json

import pytest

from archdiff import runner, sweep
from archdiff.errors import RunFailed

pytest.importorskip("submitit")


def test_local_executor_runs_one_job_per_seed_and_aggregates(tmp_path):
    summary = sweep.reproduce(seeds=[0, 1], only=["fig2-linear-gmm"], out=tmp_path, executor="local", jobs=2,
                              log=lambda _: None, progress=False)
    assert summary["seeds"] == [0, 1] and summary["claims_total"] == 5
    for s in (0, 1):
        run = tmp_path / f"seed-{s}" / "fig2-linear-gmm"
        assert runner.is_finished(run) and json.loads((run / "metrics.json").read_text())["seed"] == s
    claims = summary["experiments"][0]["claims"]
    assert all(c["of"] == 2 for c in claims)
    # Theorem 3: the 3GMM and 2GMM samples are identical in every seed
    same = next(c for c in claims if c["id"] == "same-samples-3gmm-2gmm")
    assert same["reproduced"] and same["measured"] == [0.0, 0.0]
    assert list((tmp_path / ".jobs").iterdir())  # the jobs' logs


def test_a_failing_job_is_reported_with_its_run(tmp_path):
    with pytest.raises(RunFailed, match="fig5-linear-rank-images seed 0"):
        # more images than the bundled faces hold: valid input, a failure inside the job
        sweep.reproduce(only=["fig5-linear-rank-images"], overrides={"n_train": 5000},
                        out=tmp_path / "runs", executor="local", log=lambda _: None, progress=False)
