"""What an experiment is: a frozen config per scale plus one ``run(ctx) -> Result`` function.

The runner (``archdiff.runner``), not the experiment, owns the output folder, ``config.toml``,
``metrics.json`` and the marker that says the run finished. A claim is a record computed from a
measured number and a threshold, never typed in.

Metric keys (the keys of ``metrics.json``'s ``metrics``) follow one scheme, so scripts can rely on it:
dot-separated parts, each of lower-case letters, digits and underscores -- quantity first, then the model
or variant, then qualifiers such as the step count: ``copy_fraction.degree_27``,
``cov_error.rank_5.steps_1000``. Build them with ``key(...)``; the runner rejects any other key.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from archdiff import seeding
from archdiff.data.images import MAX_BAD_FILES
from archdiff.errors import UserError

SCALES = ("quick", "paper")
WORK_DIR = ".work"  # a run folder's files needed only while it runs (see Context.work)
MAJORITY = 0.5  # a model "copies" when most of its samples are copies, and "does not copy" otherwise
KEY = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")
__all__ = ["MAJORITY", "SCALES", "Claim", "Context", "Experiment", "Result", "Table", "UserError", "key",
           "keyed"]


def key(*parts: object) -> str:
    """A metric key: the parts, lower-cased, each run of other characters made one '_', joined by '.'.

    ``key("copy_fraction", "degree 27") == "copy_fraction.degree_27"``.
    """
    slugs = [re.sub(r"[^a-z0-9]+", "_", str(p).lower()).strip("_") for p in parts]
    if not all(slugs):
        raise ValueError(f"metric key parts {parts!r} leave an empty part")
    return ".".join(slugs)


def keyed(stats: dict[str, Any], *qualifiers: object) -> dict[str, Any]:
    """The same numbers under keys ``key(name, *qualifiers)``: ``keyed({"copy_fraction": 0.1}, "degree 3")``
    gives ``{"copy_fraction.degree_3": 0.1}``."""
    return {key(name, *qualifiers): v for name, v in stats.items()}


def check_keys(metrics: dict[str, Any]) -> None:
    """Raise ValueError naming the metric keys that do not follow the scheme (see the module docstring)."""
    bad = [k for k in metrics if not isinstance(k, str) or not KEY.fullmatch(k)]
    if bad:
        raise ValueError(f"metric keys {bad} do not follow the key scheme: build them with experiments.key()")


@dataclass(frozen=True)
class Claim:
    """One claim of the paper, tested: ``holds`` is computed from ``measured`` and ``threshold``."""

    id: str
    statement: str
    measured: float
    threshold: float
    comparison: str  # "<=" or ">=": the claim holds when ``measured comparison threshold``
    holds: bool

    @classmethod
    def at_most(cls, id: str, statement: str, measured: float, threshold: float) -> Claim:
        """The claim holds when measured <= threshold."""
        return cls(id, statement, float(measured), float(threshold), "<=", bool(measured <= threshold))

    @classmethod
    def at_least(cls, id: str, statement: str, measured: float, threshold: float) -> Claim:
        """The claim holds when measured >= threshold."""
        return cls(id, statement, float(measured), float(threshold), ">=", bool(measured >= threshold))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Table:
    """A small table of measured numbers for the report (cells: text or numbers; floats show 4 digits)."""

    caption: str
    headers: list[str]
    rows: list[list[Any]]

    def __post_init__(self):
        if any(len(row) != len(self.headers) for row in self.rows):
            raise ValueError(f"table {self.caption!r}: every row needs {len(self.headers)} cells")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Result:
    """What ``run`` returns: measured numbers, claims, the figure files it wrote (names in out) and tables."""

    metrics: dict[str, Any]
    claims: list[Claim]
    figures: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)


def interactive() -> bool:
    """True when progress bars show (stderr is a terminal); otherwise stages are logged as lines."""
    return sys.stderr.isatty()


@dataclass
class Context:
    """Everything a run may read: resolved config, device, seed, data spec and its output folder.

    ``out`` is the run's own folder; files written there stay while the run is unfinished, so a run that
    is stopped and started again (the runner adopts the folder) finds its training checkpoints in it.
    """

    config: dict[str, Any]
    scale: str
    seed: int
    device: torch.device
    out: Path
    data: str | None = None
    progress: bool = True
    resolved: dict[str, Any] = field(default_factory=dict)
    max_bad_files: int = MAX_BAD_FILES  # unreadable files of an image folder skipped, at most

    @property
    def work(self) -> Path:
        """A folder for what the run needs only while it runs (checkpoints of networks it does not keep):
        kept with the unfinished run, so a resumed run continues from it; removed when the run finishes."""
        return self.out / WORK_DIR

    def stage(self, text: str) -> None:
        """Say that the run starts a stage (e.g. "training unet (more pooling)"): one line on stderr when
        no progress bar shows it (output not a terminal); nothing with progress off."""
        if self.progress and not interactive():
            print(f"  {text}", file=sys.stderr, flush=True)

    def stream(self, label: str) -> int:
        """The seed of one named random stream of this run (``seeding.derive(seed, label)``)."""
        return seeding.derive(self.seed, label)

    def record(self, **settings: Any) -> None:
        """Note settings the run derived from its config (e.g. a schedule scaled to the image size): the
        runner writes them into config.toml under ``resolved``, so it shows what actually ran."""
        self.resolved.update(settings)

    def images(self) -> torch.Tensor:
        """The training images [N, C, H, W] in [-1, 1] on the run's device: ``--data`` if given, else the
        config's ``data``; ``n_train`` of them (seeded subset), resized to ``image_size`` if set."""
        from archdiff.data.images import load_images

        c = self.config
        self.stage(f"loading images: {self.data or c['data']}")
        data = load_images(self.data or c["data"], n=c.get("n_train"), size=c.get("image_size"),
                           seed=self.seed, max_bad_files=self.max_bad_files)
        self.record(data_source=self.data or c["data"], n_train=int(data.shape[0]),
                    data_shape=list(data.shape[1:]))
        return data.to(self.device)


def checked_setting(name: str, default: Any, value: Any) -> Any:
    """``value`` if it has the type of ``default`` (an int where a float is expected becomes a float; a
    default of None takes anything; a list's items are checked against its first item)."""
    def fits(d, v) -> bool:
        if d is None:
            return True
        if isinstance(d, bool) or isinstance(v, bool):
            return isinstance(d, bool) and isinstance(v, bool)
        if isinstance(d, float):
            return isinstance(v, int | float)
        if isinstance(d, list):
            return isinstance(v, list) and (not d or all(fits(d[0], x) for x in v))
        return isinstance(v, type(d))

    if not fits(default, value):
        raise UserError(f"{name} = {value!r}: expected a value like its default {default!r} "
                        f"({type(default).__name__})")
    return float(value) if isinstance(default, float) else value


@dataclass(frozen=True)
class Experiment:
    """One paper figure: id, one-line title, the paper's statement, configs per scale, run()."""

    id: str
    title: str
    paper: str
    scales: dict[str, dict[str, Any]]
    run: Callable[[Context], Result]
    uses_images: bool = False

    def time_conditioned(self) -> Experiment:
        """The same figure at paper scale with ONE time-conditioned network per model instead of one network
        per level (id ``ID-time``), so the two conditioning modes can be compared on the same data."""
        return replace(self, id=f"{self.id}-time", title=f"{self.title} (time-conditioned networks)",
                       scales={"paper": {**self.scales["paper"], "conditioning": "time"}})

    def config(self, scale: str) -> dict[str, Any]:
        """The frozen config for a scale (a copy)."""
        if scale not in self.scales:
            raise UserError(f"experiment {self.id} has no scale {scale!r}: use {', '.join(self.scales)}")
        return dict(self.scales[scale])

    def configured(self, scale: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The scale's config with ``overrides`` applied, each checked: a setting the experiment has, with a
        value of its default's type and, where the default is a positive number, in range (a count from 1
        to 2**31 - 1, a finite number >= 0); a UserError naming the setting otherwise."""
        config = self.config(scale)
        for key, value in (overrides or {}).items():
            if key not in config:
                raise UserError(f"unknown setting {key!r} for {self.id}: its settings are "
                                f"{', '.join(config)}")
            config[key] = checked_setting(f"{self.id} setting {key}", config[key], value)
            check_range(f"{self.id} setting {key}", self.scales[scale][key], config[key])
        return config


def check_range(name: str, default: Any, value: Any) -> None:
    """Refuse a value out of the range a positive default implies (for a list: of its first item)."""
    if isinstance(default, list):
        for item in value if default else []:
            check_range(name, default[0], item)
        return
    if isinstance(default, bool) or not isinstance(default, int | float) or default <= 0:
        return
    if isinstance(default, int) and not 1 <= value <= 2**31 - 1:
        raise UserError(f"{name} = {value!r}: expected a count from 1 to 2**31 - 1")
    if isinstance(default, float) and not (math.isfinite(value) and value >= 0):
        raise UserError(f"{name} = {value!r}: expected a finite number >= 0")
