"""The CLI contract: list, run, bad input (one line on stderr, exit 2), and the README's API example."""

import json
import re
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
    block = re.search(r"```python\n(.*?)```", text, re.S)
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
