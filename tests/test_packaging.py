"""Packaging metadata agrees with itself: one version everywhere, the license declared as the LICENSE file
says, a citation file with the required fields, py.typed shipped, and the installed entry points work."""

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

import archdiff

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]


def citation_scalars() -> dict[str, str]:
    """CITATION.cff's top-level `key: value` lines, unquoted: enough to compare without a YAML parser."""
    lines = (ROOT / "CITATION.cff").read_text().splitlines()
    found = (re.fullmatch(r"([a-z-]+): (.+)", line) for line in lines)
    return {m[1]: m[2].strip('"') for m in found if m}


def test_the_version_has_one_source_and_the_install_reports_it():
    assert "version" not in PROJECT and "version" in PROJECT["dynamic"]
    assert PYPROJECT["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "archdiff.__version__"}
    assert metadata.version("archdiff") == archdiff.__version__
    script = Path(sys.executable).parent / "archdiff"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split() == ["archdiff", archdiff.__version__]


def test_the_declared_license_is_the_license_file():
    assert PROJECT["license"] == "MIT" and PROJECT["license-files"] == ["LICENSE"]
    assert (ROOT / "LICENSE").read_text().splitlines()[0] == "MIT License"
    assert metadata.metadata("archdiff")["License-Expression"] == PROJECT["license"]


def test_the_citation_matches_the_package():
    cff = citation_scalars()
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == archdiff.__version__
    assert cff["title"] == PROJECT["name"]
    assert cff["license"] == PROJECT["license"]


def test_the_citation_is_valid_yaml_with_the_required_fields():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert {"cff-version", "message", "title", "authors", "version"} <= set(cff)
    assert cff == {**cff, **citation_scalars()}  # the simple reading above agrees with YAML's
    for work in [cff, *cff["references"]]:
        assert work["title"] and all("name" in a or "family-names" in a for a in work["authors"])
    (paper,) = cff["references"]
    assert paper["title"] == "Diffusion Models, Denoiser Architecture and Creativity"


def test_py_typed_is_package_data():
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["archdiff"]
    assert (ROOT / "archdiff" / "py.typed").is_file()


def test_python_dash_m_help_works_outside_the_source_tree(tmp_path):
    done = subprocess.run([sys.executable, "-m", "archdiff", "--help"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path, check=True)
    assert done.stdout.startswith("usage: archdiff")


def test_the_readme_installs_the_torch_that_ci_pins():
    (pin,) = re.findall(r'^TORCH="(.+)"$', (ROOT / ".ci" / "run").read_text(), flags=re.M)
    assert f"pip install {pin} " in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("module", ["archdiff.samplers", "archdiff.metrics", "archdiff.training",
                                    "archdiff.denoisers.local_score", "archdiff.interop"])
def test_each_entry_module_imports_first_in_a_fresh_process(module):
    """No import cycle: a module imported first (as a command's lazy import does) loads."""
    done = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1]
