"""The CLI contract: list, run, bad input (one line on stderr, exit 2), and the README's API example."""

import json
import re
import tomllib
from pathlib import Path

import pytest

from archdiff.cli import main
from archdiff.experiments import registry

ROOT = Path(__file__).resolve().parents[1]


def test_list_prints_every_experiment_with_a_description(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == list(registry())
    assert all(len(ln.split("\t")[1]) > 10 for ln in lines)
    assert {"fig2-linear-gmm", "fig3-poly-gmm"} <= set(registry())


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "no-such-figure"],
        ["run", "fig2-linear-gmm", "--scale", "huge"],
        ["run", "fig2-linear-gmm", "--seed", "abc"],
        ["frobnicate"],
    ],
)
def test_bad_input_gives_one_line_and_exit_2(argv, capsys, tmp_path):
    with pytest.raises(SystemExit) as e:
        code = main(argv + ["--out", str(tmp_path)])
        raise SystemExit(code)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("archdiff: error:")
    assert not (tmp_path / "fig2-linear-gmm").exists()


def test_unwritable_out_is_a_clear_error(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["run", "fig2-linear-gmm", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err
    assert blocker.read_text() == "not a folder"


def test_run_fig2_writes_config_figures_and_claims(tmp_path, capsys):
    assert main(["run", "fig2-linear-gmm", "--out", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    run = tmp_path / "fig2-linear-gmm"
    record = json.loads((run / "metrics.json").read_text())
    assert (run / "config.toml").read_text().startswith('experiment = "fig2-linear-gmm"')
    assert all((run / f).stat().st_size > 0 for f in record["figures"])
    fields = {"id", "statement", "measured", "threshold", "comparison", "holds"}
    assert record["claims"] and all(set(c) == fields for c in record["claims"])
    assert all(c["holds"] for c in record["claims"])  # Theorem 3 holds exactly here
    assert not list(tmp_path.glob(".*.partial-*"))


def test_readme_python_example_runs():
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", text.split("## The Python API", 1)[1], re.S)
    assert block, "README has a python example"
    namespace: dict = {}
    exec(compile(block.group(1), "README.md", "exec"), namespace)
    assert 0 <= namespace["copies"] <= 1 and namespace["distance"] > 0


def test_reproduce_only_takes_ids_separated_by_spaces_or_commas(tmp_path):
    ids = ["fig2-linear-gmm", "fig6-linear-retrain"]
    for argv, out in [(ids, tmp_path / "spaces"), ([",".join(ids)], tmp_path / "commas")]:
        assert main(["reproduce", "--only", *argv, "--out", str(out), "--quiet", "--device", "cpu"]) == 0
        assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ids
    with pytest.raises(SystemExit) as e:
        raise SystemExit(main(["reproduce", "--only", "fig2-linear-gmm,nope", "--out", str(tmp_path / "x")]))
    assert e.value.code == 2


def test_set_and_config_change_settings_and_are_recorded(tmp_path, capsys):
    out = tmp_path / "a"
    argv = ["run", "fig2-linear-gmm", "--set", "steps=[10, 50]", "--set", "schedule=linear", "--quiet"]
    assert main([*argv, "--out", str(out)]) == 0
    record = json.loads((out / "fig2-linear-gmm" / "metrics.json").read_text())
    assert record["overrides"] == {"steps": [10, 50], "schedule": "linear"}
    config = (out / "fig2-linear-gmm" / "config.toml").read_text()
    assert 'schedule = "linear"' in config
    assert main(["reproduce", "--only", "fig2-linear-gmm", "--set", "schedule=linear", "--quiet",
                 "--out", str(tmp_path / "r")]) == 0
    report = (tmp_path / "r" / "report.html").read_text()
    assert "Settings changed</b>: schedule = &#x27;linear&#x27;" in report
    # a run's own config.toml replays it: the same [config] table
    replay = tmp_path / "b"
    assert main(["run", "fig2-linear-gmm", "--config", str(out / "fig2-linear-gmm" / "config.toml"),
                 "--quiet", "--out", str(replay)]) == 0
    tables = [tomllib.loads((d / "fig2-linear-gmm" / "config.toml").read_text())["config"]
              for d in (out, replay)]
    assert tables[0] == tables[1]


@pytest.mark.parametrize("setting, message", [("stepz=3", "unknown setting 'stepz'"),
                                              ("steps=abc", "expected a value like its default"),
                                              ("n_train=2.5", "expected a value like its default"),
                                              ("steps", "KEY=VALUE")])
def test_bad_settings_are_one_line_and_write_nothing(setting, message, tmp_path, capsys):
    assert main(["run", "fig2-linear-gmm", "--set", setting, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not (tmp_path / "fig2-linear-gmm").exists()


def test_overridden_run_is_not_taken_for_the_standard_one(tmp_path, capsys):
    out = str(tmp_path)
    assert main(["run", "fig6-linear-retrain", "--set", "n_samples=40", "--quiet", "--out", out]) == 0
    capsys.readouterr()
    assert main(["reproduce", "--only", "fig6-linear-retrain", "--quiet", "--out", out]) == 0
    assert "[skip]" not in capsys.readouterr().out  # a different identity: run again
    assert main(["reproduce", "--only", "fig6-linear-retrain", "--quiet", "--out", out]) == 0
    assert "[skip]" in capsys.readouterr().out  # now the standard run is there
    assert main(["reproduce", "--only", "fig6-linear-retrain", "--set", "stepz=1", "--out", out]) == 2


def test_version_and_python_dash_m(capsys):
    import subprocess
    import sys

    from archdiff import __version__

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.strip() == f"archdiff {__version__}"
    done = subprocess.run([sys.executable, "-m", "archdiff", "list"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and done.stdout.splitlines()[0].startswith("fig1-unet-variants\t")
