"""Saved models: every kind reloads to bitwise the same outputs, a user's network in a new process too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import archdiff
from archdiff.denoisers import (
    EmpiricalOptimal,
    LinearDenoiser,
    LocalScore,
    MomentPolynomialDenoiser,
    PatchPolynomialDenoiser,
    PerLevelDenoiser,
    PolynomialDenoiser,
    load,
    patch,
    polynomial,
)
from archdiff.denoisers.networks import NetSpec, build, register
from archdiff.denoisers.saved import FORMAT, MODEL_FILE, read_safetensors
from archdiff.training import TrainConfig, train

LEVELS = [0.3, 0.8]  # fitted before saving
UNSAVED = 0.55  # a level fitted only after loading


def vectors(n: int = 40, d: int = 3) -> torch.Tensor:
    return torch.randn(n, d, generator=torch.Generator().manual_seed(0))


def images(n: int = 12) -> torch.Tensor:
    return torch.randn(n, 1, 6, 6, generator=torch.Generator().manual_seed(1))


CLOSED_FORM = {
    "linear": lambda: LinearDenoiser.fit(vectors()),
    "linear-rank-2": lambda: LinearDenoiser.fit(vectors(), rank=2),
    "empirical-optimal": lambda: EmpiricalOptimal(vectors()),
    "polynomial": lambda: PolynomialDenoiser(vectors(), 3, width=16, seed=3),
    "polynomial-column": lambda: PolynomialDenoiser(vectors(), 2, width=16, recipe="column"),
    "moment-polynomial": lambda: MomentPolynomialDenoiser.from_data(vectors(d=2), 2),
    "patch-polynomial": lambda: PatchPolynomialDenoiser(images(), [(5, 10), (3, 8)], levels=LEVELS, seed=2,
                                                        max_chunk_bytes=20_000),
    "local-score": lambda: LocalScore(images(), {0.3: 3, 0.5 + 0.8 / 3: 5}, padding="clipped", chunk=500),
    "local-score-ls": lambda: LocalScore(images(), 3, equivariant=False, padding="circular"),
}


def inputs(model) -> torch.Tensor:
    return torch.randn(6, *model.shape, generator=torch.Generator().manual_seed(9))


@pytest.mark.parametrize("name", CLOSED_FORM)
def test_a_closed_form_model_reloads_its_fit_bitwise(tmp_path, monkeypatch, name):
    """The loaded model's outputs are bitwise the original's at the saved levels (a batch of mixed levels
    too), from the saved fits: no level is refitted, and a random layer drawn differently is not used."""
    model = CLOSED_FORM[name]()
    x, mixed = inputs(model), torch.tensor(LEVELS * 3, dtype=torch.float64)
    expected = [model(x, a) for a in LEVELS]
    model.save(tmp_path)
    with monkeypatch.context() as m:
        m.setattr(type(model), "fit_level", lambda *_: pytest.fail("a level was refitted"), raising=False)
        for module in (polynomial, patch):
            m.setattr(module, "random_layer", lambda d, f, *_: (torch.zeros(f, d), torch.ones(f)))
        loaded = load(tmp_path)
        assert type(loaded) is type(model)
        assert all(torch.equal(loaded(x, a), e) for a, e in zip(LEVELS, expected))
        assert torch.equal(loaded(x, mixed), model(x, mixed))
    if isinstance(model, LocalScore):  # outputs alone would hide a drifted level (nearest in log-SNR)
        assert loaded.patch == model.patch
    config = json.loads((tmp_path / "config.json").read_text())
    assert (config["kind"], config["format"], config["shape"]) == (model.kind, FORMAT, list(model.shape))
    assert config.get("fitted_levels", LEVELS) == LEVELS


@pytest.mark.parametrize("name", ["polynomial", "moment-polynomial", "patch-polynomial"])
def test_a_level_not_saved_is_fitted_on_demand_as_the_original_would(tmp_path, name):
    model = CLOSED_FORM[name]()
    x = inputs(model)
    for a in LEVELS:
        model.fit_at(a)
    loaded = load(model.save(tmp_path))
    assert loaded.fitted_levels == LEVELS
    assert torch.equal(loaded(x, UNSAVED), model(x, UNSAVED))
    assert loaded.fitted_levels == sorted([*LEVELS, UNSAVED])


def test_the_model_file_alone_describes_the_model(tmp_path):
    """model.safetensors holds the format, version, kind and whole config in its metadata: it loads alone."""
    model = CLOSED_FORM["polynomial"]()
    x = inputs(model)
    expected = model(x, LEVELS[0])
    model.save(tmp_path / "m")
    _, meta = read_safetensors(tmp_path / "m" / MODEL_FILE)
    assert meta["format"] == str(FORMAT) and meta["archdiff"] == archdiff.__version__
    assert meta["kind"] == "polynomial"
    assert json.loads(meta["config"]) == json.loads((tmp_path / "m" / "config.json").read_text())
    alone = tmp_path / "elsewhere" / MODEL_FILE
    alone.parent.mkdir()
    (tmp_path / "m" / MODEL_FILE).rename(alone)
    assert torch.equal(load(alone)(x, LEVELS[0]), expected)


def test_a_format_1_folder_still_loads_and_resaves_in_the_current_format(tmp_path):
    """A folder written before the format was recorded (no format, kind or metadata) loads as a network."""
    spec, levels = NetSpec("mlp2d", {"hidden": 8, "bottleneck": 1}), [0.2, 0.7]
    nets = [build("mlp2d", hidden=8, bottleneck=1) for _ in levels]
    state = {k: torch.stack([n.state_dict()[k] for n in nets]) for k in nets[0].state_dict()}
    save_file(state, str(tmp_path / MODEL_FILE))
    old = {"net": spec.to_dict(), "shape": [2], "train": {"conditioning": "per-level", "levels": levels}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = load(tmp_path)
    x = torch.randn(3, 2)
    with torch.no_grad():
        assert isinstance(loaded, PerLevelDenoiser) and torch.equal(loaded(x, 0.7), nets[1](x))
    again = json.loads((loaded.save(tmp_path / "again") / "config.json").read_text())
    assert again == {**old, "format": FORMAT, "archdiff": archdiff.__version__, "kind": "network"}


def test_a_newer_format_or_an_unknown_kind_is_refused(tmp_path):
    LinearDenoiser.fit(vectors()).save(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    for change, words in (({"format": FORMAT + 1}, "upgrade archdiff"), ({"kind": "oracle"}, "oracle")):
        (tmp_path / "config.json").write_text(json.dumps({**config, **change}))
        with pytest.raises(ValueError, match=words):
            load(tmp_path)


# ------------------------------------------------------------------------------------- user networks

USER_MODULE = '''
from torch import nn

from archdiff.denoisers.networks import append_level, register


@register("user-mlp")
class UserMLP(nn.Module):
    """A registered network of a user's own, time-conditioned or per-level."""

    def __init__(self, dim: int = 2, hidden: int = 8, level_input: bool = False):
        super().__init__()
        self.level_input = level_input
        self.body = nn.Sequential(nn.Linear(dim + level_input, hidden), nn.Tanh(), nn.Linear(hidden, dim))

    def forward(self, x, level=None):
        return self.body(append_level(x, level) if self.level_input else x)


class PlainNet(nn.Module):
    """A plain module named as module:Class, without level_input: per-level only."""

    def __init__(self, dim: int = 2):
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, x):
        return self.lin(x)
'''

RELOAD = '''
import sys
import torch
from safetensors.torch import save_file
from archdiff.denoisers import load

x, levels = torch.load(sys.argv[1])
try:
    out = {name: load(folder)(x, levels) for name, folder in zip(sys.argv[3::2], sys.argv[4::2])}
except ValueError as e:
    print(e)
    sys.exit(3)
save_file(out, sys.argv[2])
'''


@pytest.fixture(scope="module")
def user_module(tmp_path_factory) -> Path:
    """A folder holding the user's module ``saved_user_nets`` (imported here as a user would)."""
    folder = tmp_path_factory.mktemp("user")
    (folder / "saved_user_nets.py").write_text(USER_MODULE)
    sys.path.insert(0, str(folder))
    yield folder
    sys.path.remove(str(folder))


def reload_elsewhere(tmp_path: Path, pythonpath: list[Path], x, levels, models: dict[str, Path]):
    """Load ``models`` in a new Python process with ``pythonpath``: (its outputs or None, what it printed)."""
    torch.save((x, levels), tmp_path / "x.pt")
    (tmp_path / "reload.py").write_text(RELOAD)
    source = Path(archdiff.__file__).parents[1]  # the archdiff this process runs
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, source]))}
    args = [str(a) for pair in models.items() for a in pair]
    done = subprocess.run([sys.executable, str(tmp_path / "reload.py"), str(tmp_path / "x.pt"),
                           str(tmp_path / "out.safetensors"), *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=300)
    if done.returncode != 0:
        assert done.returncode == 3, done.stderr
        return None, done.stdout.strip()
    return read_safetensors(tmp_path / "out.safetensors")[0], done.stdout


def test_a_users_network_reloads_in_a_new_process(tmp_path, user_module):
    """A registered user network (time-conditioned) and a plain module:Class (per-level), trained and
    saved here, load in a new process with the module on PYTHONPATH and answer bitwise the same; without
    the module the load fails with one line naming it."""
    import saved_user_nets  # noqa: F401  (registers "user-mlp", as the user's code would)

    data = torch.randn(64, 2, generator=torch.Generator().manual_seed(2))
    runs = {"registered": (NetSpec("user-mlp", {"hidden": 6}), "time"),
            "plain": (NetSpec("saved_user_nets:PlainNet", {}), "per-level")}
    models, x = {}, torch.randn(5, 2)
    levels = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9], dtype=torch.float64)
    for name, (spec, conditioning) in runs.items():
        cfg = TrainConfig(epochs=1, batch_size=32, lr=1e-2, steps=5, conditioning=conditioning)
        models[name] = train(spec, data, cfg, out=tmp_path / name, progress=False, device="cpu")
    net = json.loads((tmp_path / "registered" / "config.json").read_text())["net"]
    assert net == {"name": "user-mlp", "kwargs": {"hidden": 6}, "module": "saved_user_nets"}

    outputs, _ = reload_elsewhere(tmp_path, [user_module], x, levels,
                                  {name: tmp_path / name for name in runs})
    for name, result in models.items():
        assert torch.equal(outputs[name], result.denoiser(x, levels)), name

    for name, words in (("registered", ["user-mlp", "saved_user_nets", "PYTHONPATH"]),
                        ("plain", ["saved_user_nets:PlainNet", "PYTHONPATH"])):
        outputs, said = reload_elsewhere(tmp_path, [], x, levels, {name: tmp_path / name})
        assert outputs is None and len(said.splitlines()) == 1 and all(w in said for w in words), said


def test_module_class_names_and_the_level_input_rule(user_module):
    """module:Class builds a user's class; one without level_input builds per-level only; a module that is
    not there, or a class it lacks, is a ValueError naming it."""
    assert isinstance(NetSpec("saved_user_nets:PlainNet", {"dim": 3}).build(), torch.nn.Module)
    with pytest.raises(ValueError, match="level_input"):
        NetSpec("saved_user_nets:PlainNet").build(level_input=True)
    with pytest.raises(ValueError, match="no_such_user_module"):
        NetSpec("no_such_user_module:Net").build()
    with pytest.raises(ValueError, match="Missing"):
        NetSpec("saved_user_nets:Missing").build()
    with pytest.raises(ValueError, match="ghost-net.*no_such_user_module"):
        NetSpec("ghost-net", {}, module="no_such_user_module").build()
    with pytest.raises(ValueError, match=":"):
        register("a:b")
