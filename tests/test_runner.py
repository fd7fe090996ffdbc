"""The runner owns run folders: atomic finish, skip of finished runs, summary and report."""

import json

import pytest

from archdiff import plots, runner, sweep
from archdiff.experiments import Claim, Experiment, Result
from archdiff.experiments.base import UserError, key, keyed


def _tiny(fail: bool = False) -> Experiment:
    def run(ctx):
        if fail:
            raise RuntimeError("boom")
        import torch

        plots.line_plot(ctx.out / "line.png", [1, 2], {"a": [1.0, 2.0]}, "x", "y")
        value = float(torch.tensor(ctx.config["value"]))
        return Result({"value": value}, [Claim.at_most("small", "value is small", value, 1.0)], ["line.png"])

    return Experiment("tiny", "a tiny experiment", "the paper says", {"quick": {"value": 0.5},
                      "paper": {"value": 2.0}}, run)


def test_claim_holds_is_computed():
    assert Claim.at_most("a", "s", 1.0, 2.0).holds and not Claim.at_most("a", "s", 3.0, 2.0).holds
    assert Claim.at_least("a", "s", 3.0, 2.0).holds and not Claim.at_least("a", "s", 1.0, 2.0).holds


def test_failed_run_leaves_no_finished_folder_and_keeps_the_previous_result(tmp_path):
    runner.run_experiment(_tiny(), out=tmp_path, progress=False)
    before = (tmp_path / "tiny" / "metrics.json").read_text()
    with pytest.raises(RuntimeError):
        runner.run_experiment(_tiny(fail=True), out=tmp_path, progress=False)
    assert runner.is_finished(tmp_path / "tiny")
    assert (tmp_path / "tiny" / "metrics.json").read_text() == before
    leftovers = list(tmp_path.glob(".tiny.partial-*"))  # the failed run's own folder, never finished
    assert len(leftovers) == 1 and not runner.is_finished(leftovers[0])


def test_scales_and_devices_are_checked(tmp_path):
    with pytest.raises(UserError):
        runner.run_experiment(_tiny(), "huge", out=tmp_path)
    with pytest.raises(UserError):
        runner.resolve_device("tpu")


def test_reproduce_writes_summary_and_report_then_skips(tmp_path, monkeypatch):
    import archdiff.experiments as ex

    monkeypatch.setattr(ex, "registry", lambda: {"tiny": _tiny()})
    logs = []
    summary = sweep.reproduce(out=tmp_path, log=logs.append)
    assert summary["claims_total"] == 1 and summary["claims_holding"] == 1
    assert json.loads((tmp_path / "summary.json").read_text()) == summary
    html = (tmp_path / "report.html").read_text()
    assert "data:image/png;base64," in html and "the paper says" in html
    sweep.reproduce(out=tmp_path, log=logs.append)
    assert logs[-1].startswith("[skip] tiny")
    summary = sweep.reproduce("paper", out=tmp_path, log=logs.append)  # another scale reruns
    assert logs[-1].startswith("[run]") and summary["claims_holding"] == 0


def test_an_overridden_run_is_not_taken_for_the_standard_one(tmp_path, monkeypatch):
    """reproduce skips a finished run only when config.toml's identity (scale, seed, data, config) matches."""
    import archdiff.experiments as ex

    monkeypatch.setattr(ex, "registry", lambda: {"tiny": _tiny()})
    runner.run_experiment(_tiny(), out=tmp_path, overrides={"value": 0.25}, progress=False)
    logs = []
    sweep.reproduce(out=tmp_path, log=logs.append)
    assert logs[-1].startswith("[run]  tiny")
    sweep.reproduce(out=tmp_path, log=logs.append)
    assert logs[-1].startswith("[skip] tiny")
    sweep.reproduce(out=tmp_path, seed=1, log=logs.append)
    assert logs[-1].startswith("[run]  tiny")


def test_metric_keys_follow_the_scheme(tmp_path):
    assert key("copy_fraction", "degree 27, authors' recipe") == "copy_fraction.degree_27_authors_recipe"
    assert keyed({"nn_distance": 1.0}, "rank 5", "steps_10") == {"nn_distance.rank_5.steps_10": 1.0}

    def bad(ctx):
        return Result({"copy fraction [x]": 1.0}, [])

    with pytest.raises(ValueError, match="key scheme"):
        runner.run_experiment(Experiment("bad", "t", "p", {"quick": {}}, bad), out=tmp_path, progress=False)
    assert not runner.is_finished(tmp_path / "bad")


def _seed_dependent() -> Experiment:
    """Its claim holds at seed 0 and fails at seed 1; the mean of the two values would hold."""
    def run(ctx):
        value = {0: 0.0, 1: 1.5}.get(ctx.seed, 0.5)
        return Result({"value": value}, [Claim.at_most("small", "value is small", value, 1.0)])

    return Experiment("seedy", "seed-dependent", "the paper says", {"quick": {}}, run)


def test_parse_seeds():
    assert sweep.parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert sweep.parse_seeds("3") == [3] and sweep.parse_seeds("0-2,7,1") == [0, 1, 2, 7]
    for bad in ("4-0", "a", "1,,2", "-3"):
        with pytest.raises(UserError):
            sweep.parse_seeds(bad)


def test_claims_over_seeds_are_reproduced_only_when_they_hold_in_every_seed(tmp_path, monkeypatch):
    import archdiff.experiments as ex

    monkeypatch.setattr(ex, "registry", lambda: {"seedy": _seed_dependent(), "tiny": _tiny()})
    summary = sweep.reproduce(seeds=[0, 1], out=tmp_path, log=lambda _: None)
    assert summary["seeds"] == [0, 1] and summary["claims_total"] == 2 and summary["claims_reproduced"] == 1
    seedy = next(e for e in summary["experiments"] if e["experiment"] == "seedy")["claims"][0]
    assert seedy["measured"] == [0.0, 1.5] and seedy["holds"] == [True, False]
    assert seedy["holds_in"] == 1 and seedy["of"] == 2 and not seedy["reproduced"]
    assert seedy["mean"] <= 1.0  # the mean would hold: a failing seed is not averaged away
    for s in (0, 1):  # one folder per seed, each a finished run with its own summary and report
        assert runner.is_finished(tmp_path / f"seed-{s}" / "seedy")
        assert json.loads((tmp_path / f"seed-{s}" / "summary.json").read_text())["seed"] == s
    html = (tmp_path / "report.html").read_text()
    assert "not reproduced" in html and "1 of 2" in html


def test_a_claim_made_in_some_seeds_only_is_summarized_and_not_reproduced():
    """Claims are the union over seeds (first seen first); a seed lacking one counts as not holding."""
    def record(*claims):
        return {"experiment": "e", "title": "t", "seconds": 1.0, "claims": [
            {"id": i, "statement": i, "comparison": ">=", "measured": v, "threshold": 0.5, "holds": v >= 0.5}
            for i, v in claims]}

    summary = sweep.aggregate({0: [record(("a", 1.0))], 1: [record(("b", 0.9), ("a", 0.7))]}, "quick")
    a, b = summary["experiments"][0]["claims"]
    assert (a["id"], a["holds"], a["reproduced"]) == ("a", [True, True], True)
    assert (b["id"], b["measured"], b["holds"], b["reproduced"]) == ("b", [None, 0.9], [False, True], False)
    assert summary["claims_total"] == 2 and summary["claims_reproduced"] == 1


def test_python_overrides_are_checked_like_the_command_line(tmp_path):
    from archdiff.errors import UserError
    from archdiff.experiments import get
    from archdiff.runner import run_experiment

    with pytest.raises(UserError, match="unknown setting 'stepz'"):
        run_experiment(get("fig2-linear-gmm"), overrides={"stepz": 3}, out=tmp_path)
    with pytest.raises(UserError, match="expected a value like"):
        run_experiment(get("fig2-linear-gmm"), overrides={"n_samples": "many"}, out=tmp_path)
    assert not (tmp_path / "fig2-linear-gmm").exists()


def test_an_experiment_without_the_scale_is_skipped_by_reproduce_and_refused_by_name(tmp_path, monkeypatch):
    """The time-conditioned variant of a figure exists at paper scale only: reproduce at quick scale says it
    skips it; asking for it by name at that scale is a UserError naming the scales it has."""
    import archdiff.experiments as ex

    paper_only = _tiny().time_conditioned()
    assert paper_only.id == "tiny-time" and list(paper_only.scales) == ["paper"]
    assert paper_only.config("paper") == {**_tiny().config("paper"), "conditioning": "time"}
    monkeypatch.setattr(ex, "registry", lambda: {"tiny": _tiny(), "tiny-time": paper_only})
    logs = []
    summary = sweep.reproduce(out=tmp_path, log=logs.append)
    assert any(m.startswith("[skip] tiny-time: it has no quick scale") for m in logs)
    assert [e["experiment"] for e in summary["experiments"]] == ["tiny"]
    with pytest.raises(UserError, match="no scale 'quick'"):
        sweep.reproduce(out=tmp_path, only=["tiny-time"], log=logs.append)
