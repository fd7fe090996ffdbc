"""Smoke test of an installed (not editable) archdiff, run from outside the source tree: the package comes
from the environment with its data file and metadata, and the command line runs an experiment end to end,
and a fit -> sample -> measure journey.

Usage: VENV/bin/python .ci/smoke.py, from any folder but the source tree."""

import subprocess
import sys
import tempfile
import tomllib
from importlib import metadata
from pathlib import Path

import archdiff

SOURCE = Path(__file__).resolve().parents[1]
SCRIPT = Path(sys.executable).parent / "archdiff"


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def main() -> None:
    package = Path(archdiff.__file__).resolve().parent
    assert SOURCE not in package.parents, f"archdiff was imported from the source tree: {package}"
    assert (package / "py.typed").is_file(), "py.typed is missing from the installed package"
    declared = tomllib.loads((SOURCE / "pyproject.toml").read_text())["project"]["license"]
    assert metadata.metadata("archdiff")["License-Expression"] == declared
    assert metadata.version("archdiff") == archdiff.__version__

    assert run(str(SCRIPT), "--version").split() == ["archdiff", archdiff.__version__]
    assert "fig2-linear-gmm" in run(sys.executable, "-m", "archdiff", "list").split()
    with tempfile.TemporaryDirectory() as out:
        run(str(SCRIPT), "run", "fig2-linear-gmm", "--quiet", "--out", out)
        assert (Path(out) / "fig2-linear-gmm" / "metrics.json").is_file()
        model, samples, measured = (str(Path(out) / name) for name in ("linear", "s.npz", "m.json"))
        data = ["--data", "digits", "--n-train", "50"]
        run(str(SCRIPT), "fit", "linear", *data, "--out", model)
        run(str(SCRIPT), "sample", model, "--n", "8", "--steps", "5", "--out", samples, "--quiet")
        run(str(SCRIPT), "measure", samples, "--train", "digits", "--n-train", "50", "--json", measured)
        assert Path(measured).is_file()
    print(f"smoke test passed: archdiff {archdiff.__version__} installed in {package.parent}")


if __name__ == "__main__":
    main()
