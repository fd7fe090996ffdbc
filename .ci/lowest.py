"""Print the lowest declared version of each direct dependency as a pin, one per line: `NAME>=X` in
pyproject's [project.dependencies] becomes `NAME==X`. Every dependency must declare its minimum that way.

torch is left out: its CPU-only builds of old releases are not on the package index, so CI installs the
one CPU build it pins and does not exercise torch's declared minimum.

Usage: python .ci/lowest.py (from the repository root)."""

import re
import tomllib
from pathlib import Path

EXCLUDED = {"torch"}


def main() -> None:
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        found = re.fullmatch(r"([A-Za-z0-9._-]+)>=([0-9.]+)", requirement)
        if found is None:
            raise SystemExit(f"{requirement!r}: declare the minimum as NAME>=VERSION")
        name, lowest = found.groups()
        if name not in EXCLUDED:
            print(f"{name}=={lowest}")


if __name__ == "__main__":
    main()
