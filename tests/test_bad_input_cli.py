"""Bad input never gives a traceback: one line on stderr, exit status 2, and nothing that looks finished
(no OUT/ID with its FINISHED marker, no empty .ID.partial folder) -- for options, data and run folders.
Also the CLI's own surface: --help, list."""

from __future__ import annotations

import errno
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from archdiff.cli import main
from archdiff.data.images import load_images
from archdiff.errors import UserError
from archdiff.experiments import registry
from archdiff.runner import MARKER

FIG2 = ["run", "fig2-linear-gmm", "--quiet", "--set", "n_samples=200", "--set", "steps=[10]"]
FIG6 = ["run", "fig6-linear-retrain", "--quiet", "--set", "n_samples=20"]


@pytest.fixture(autouse=True)
def _cache_in_tmp(tmp_path, monkeypatch):
    """Image caches go to the test's folder, and no thread setting leaks in."""
    monkeypatch.setenv("ARCHDIFF_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("ARCHDIFF_THREADS", raising=False)


def _status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as e:  # argparse's own errors
        return e.code


def _rejected(argv: list[str], out: Path | str, capsys, message: str) -> str:
    """Run argv into out; assert exit 2, one error line holding message, and nothing finished-looking."""
    assert _status([*argv, "--out", str(out)]) == 2
    out = Path(out)
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("archdiff: error:")]
    assert len(errors) == 1 and all(ln.startswith("archdiff: ") for ln in err), err
    assert message in errors[0], errors[0]
    assert not list(out.rglob(MARKER)) if out.is_dir() else True
    assert not list(out.rglob(".*.partial-*")) if out.is_dir() else True
    return errors[0]


# ------------------------------------------------------------------------------------ options


@pytest.mark.parametrize("argv, message", [
    (["frobnicate"], "invalid choice"),
    (["run"], "required"),
    (["run", "no-such-figure"], "unknown experiment 'no-such-figure'"),
    (["run", "fig2-linear-gmm", "--scale", "huge"], "invalid choice"),
    (["run", "fig2-linear-gmm", "--seed", "abc"], "invalid int value"),
    (["run", "fig2-linear-gmm", "--seed", "99999999999999999999999"], "out of range"),
    (["run", "fig2-linear-gmm", "--seed", "-1"], "out of range"),
    (["run", "thm4-sgd-linear", "--seed", "99999999999999999999999"], "out of range"),
    (["reproduce", "--seed", "99999999999999999999999"], "out of range"),
    (["reproduce", "--seeds", ""], "--seeds ''"),
    (["reproduce", "--seeds", "4-0"], "give seeds as"),
    (["reproduce", "--seeds", "0-99999999999999999999999"], "out of range"),
    (["reproduce", "--seeds", "0-20000"], "more than 10000 seeds"),
    (["run", "fig2-linear-gmm", "--seeds", "1,x"], "give seeds as"),
    (["run", "fig2-linear-gmm", "--device", "tpu"], "invalid choice"),
    (["run", "fig2-linear-gmm", "--threads", "-1"], "out of range"),
    (["run", "fig2-linear-gmm", "--threads", "99999999999999999999999"], "out of range"),
    (["run", "fig2-linear-gmm", "--threads", "two"], "not a whole number"),
    (["reproduce", "--jobs", "0"], "--jobs: 0 is out of range"),
    (["run", "fig2-linear-gmm", "--max-bad-files", "-1"], "out of range"),
    (["run", "fig2-linear-gmm", "--set", "stepz=3"], "unknown setting 'stepz'"),
    (["run", "fig2-linear-gmm", "--set", "n_train=2.5"], "expected a value like its default"),
    (["run", "fig2-linear-gmm", "--set", "steps"], "KEY=VALUE"),
    (["run", "fig2-linear-gmm", "--set", "steps=[10, 0]"], "steps = 0: expected a count from 1"),
    (["run", "fig6-linear-retrain", "--set", "steps=99999999999999999999999"], "expected a count"),
    (["run", "fig6-linear-retrain", "--set", "n_samples=-5"], "expected a count"),
    (["run", "fig9-mlp-width", "--set", "lr=nan"], "expected a finite number"),
    (["reproduce", "--only", "fig6-linear-retrain", "--set", "n_samples=0"], "expected a count"),
    (["run", "fig2-linear-gmm", "--set", "=3"], "KEY=VALUE"),
    (["run", "fig2-linear-gmm", "--slurm-option", "mem"], "KEY=VALUE"),
    (["run", "fig2-linear-gmm", "--config", "no-such-settings.toml"], "cannot read it"),
    (["reproduce", "--only", "fig2-linear-gmm,nope"], "unknown experiment(s) nope"),
    (["reproduce", "--only", ""], "none named"),
    (["reproduce", "--only", "fig1-unet-variants-time"], "no scale 'quick'"),
    (["reproduce", "--only", "fig2-linear-gmm", "--set", "stepz=1"], "no experiment run here has"),
    (["run", "fig1-unet-variants-time"], "no scale 'quick'"),
    (["run", "fig1-unet-variants", "--scale", "paper"], "no image data given"),
])
def test_bad_options(argv, message, tmp_path, capsys):
    _rejected(argv, tmp_path / "runs", capsys, message)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.mark.parametrize("content, message", [("steps = [1,", "not valid TOML"), (None, "cannot read it")])
def test_bad_config_files(content, message, tmp_path, capsys):
    config = tmp_path / "settings.toml"
    config.write_text(content) if content else config.mkdir()  # a folder cannot be read as a file
    _rejected(["run", "fig2-linear-gmm", "--config", str(config)], tmp_path / "runs", capsys, message)


def test_bad_thread_variable(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARCHDIFF_THREADS", "many")
    _rejected(FIG2, tmp_path / "runs", capsys, "ARCHDIFF_THREADS='many' is not a whole number")


# --------------------------------------------------------------------------------------- data


def _npz(path: Path, **arrays) -> str:
    np.savez(path, **arrays)
    return f"npz:{path}"


def _images(folder: Path, good: int, bad: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(good):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"ok{i}.png")
    for i in range(bad):
        (folder / f"broken{i}.png").write_bytes(b"not an image")
    return folder


BAD_ARRAYS = {
    "a 0-d array": (dict(images=np.array(3.0)), "a single value (0-d)"),
    "complex values": (dict(images=np.ones((3, 4, 4), np.complex64)), "complex64"),
    "booleans": (dict(images=np.zeros((3, 4, 4), bool)), "type bool"),
    "text": (dict(images=np.full((3, 4, 4), "a")), "type <U1"),
    "no images key": (dict(a=np.zeros((2, 4, 4)), b=np.zeros((2, 4, 4))), "none named 'images'"),
    "no images": (dict(images=np.zeros((0, 4, 4))), "the image array is empty"),
    "five channels": (dict(images=np.zeros((2, 5, 4, 4))), "expected [N, H, W]"),
    "a vector": (dict(images=np.zeros(7)), "shape (7,)"),
    "NaN": (dict(images=np.full((2, 4, 4), np.nan)), "NaN or inf"),
    "values above 1": (dict(images=np.full((2, 4, 4), 3.0)), "scale them to [0, 1]"),
    "negative integers": (dict(images=np.full((2, 4, 4), -5)), "expected 0..255"),
}


@pytest.mark.parametrize("case", BAD_ARRAYS)
def test_bad_npz_arrays(case, tmp_path, capsys):
    arrays, message = BAD_ARRAYS[case]
    spec = _npz(tmp_path / "data.npz", **arrays)
    _rejected([*FIG6, "--data", spec], tmp_path / "runs", capsys, message)


@pytest.mark.parametrize("spec, message", [
    ("", "the data spec is empty"),
    ("   ", "the data spec is empty"),
    ("imagenet", "unknown data spec 'imagenet'"),
    ("celeba:", "give a path after 'celeba:'"),
    ("npz:", "give a path after 'npz:'"),
    ("lfw:extra", "unknown data spec"),
    ("folder:{tmp}/missing", "does not exist"),
    ("folder:{tmp}/file.txt", "is not a folder"),
    ("folder:{tmp}/empty", "no image files"),
    ("celeba:{tmp}/missing", "does not exist"),
    ("npz:{tmp}/missing.npz", "does not exist"),
    ("npz:{tmp}/empty", "is a folder, not a .npz file"),
    ("npz:{tmp}/file.txt", "cannot read"),
])
def test_bad_data_specs(spec, message, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "file.txt").write_text("not data")
    _rejected([*FIG6, "--data", spec.format(tmp=tmp_path)], tmp_path / "runs", capsys, message)


@pytest.mark.parametrize("exp", ["thm4-sgd-linear", "fig2-linear-gmm"])
def test_data_for_an_experiment_that_makes_its_own_is_refused(exp, tmp_path, capsys):
    line = _rejected(["run", exp, "--data", "folder:/nonexistent"], tmp_path / "runs", capsys,
                     "takes no image data")
    assert exp in line


def test_reproduce_names_the_experiments_that_ignore_data_once(tmp_path, capsys):
    assert main(["reproduce", "--only", "fig2-linear-gmm", "--data", "lfw", "--quiet", "--set",
                 "n_samples=200", "--set", "steps=[10]", "--out", str(tmp_path)]) == 0
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("[note]")]
    assert notes == ["[note] --data lfw is for the experiments that take images; these make their own "
                     "data and ignore it: fig2-linear-gmm"]


def test_too_many_unreadable_files_is_an_error_naming_them(tmp_path, capsys):
    folder = _images(tmp_path / "faces", good=4, bad=2)
    line = _rejected([*FIG6, "--data", f"folder:{folder}", "--max-bad-files", "1"], tmp_path / "runs",
                     capsys, "more than 1 unreadable image files")
    assert "broken0.png" in line and "broken1.png" in line and "--max-bad-files" in line


def test_fit_train_and_measure_take_max_bad_files_too(tmp_path, capsys):
    """The user's own commands skip unreadable files up to --max-bad-files, naming each, then refuse."""
    folder = _images(tmp_path / "faces", good=4, bad=2)
    fit = ["fit", "linear", "--data", f"folder:{folder}"]
    _rejected([*fit, "--max-bad-files", "1"], tmp_path / "m1", capsys, "more than 1 unreadable image files")
    assert _status([*fit, "--max-bad-files", "2", "--out", str(tmp_path / "m2")]) == 0
    assert "broken1.png" in capsys.readouterr().err and (tmp_path / "m2" / "config.json").is_file()
    train = ["train", "unet", "--data", f"folder:{folder}", "--set", "epochs=1"]
    _rejected([*train, "--max-bad-files", "1"], tmp_path / "t", capsys, "more than 1 unreadable image files")
    samples = tmp_path / "s.npz"
    np.savez(samples, samples=np.zeros((3, 1, 8, 8), np.float32))
    assert _status(["measure", str(samples), "--train", f"folder:{folder}", "--max-bad-files", "1"]) == 2
    assert "more than 1 unreadable image files" in capsys.readouterr().err
    assert _status(["measure", str(samples), "--train", f"folder:{folder}", "--max-bad-files", "2"]) == 0


def test_a_folder_without_readable_images_is_an_error(tmp_path, capsys):
    folder = _images(tmp_path / "faces", good=0, bad=3)
    _rejected([*FIG6, "--data", f"folder:{folder}"], tmp_path / "runs", capsys, "no readable images")


def test_asking_for_more_images_than_readable_says_how_many_to_ask_for(tmp_path, capsys):
    folder = _images(tmp_path / "faces", good=4, bad=1)
    _rejected([*FIG6, "--data", f"folder:{folder}", "--set", "n_train=5"], tmp_path / "runs", capsys,
              "ask for at most 4 (--set n_train=4")


def test_unreadable_files_within_the_allowance_are_skipped_and_named(tmp_path):
    folder = _images(tmp_path / "faces", good=5, bad=2)
    with pytest.warns(UserWarning, match=r"skipped 2 unreadable image file\(s\).*broken0.png.*broken1.png"):
        x = load_images(f"folder:{folder}")  # no n asked for: every readable image
    assert x.shape == (5, 1, 8, 8)
    with pytest.warns(UserWarning, match="broken0.png"):  # a cache hit names them again
        assert load_images(f"folder:{folder}").shape == (5, 1, 8, 8)
    with pytest.raises(UserError, match="more than 1 unreadable"), pytest.warns(UserWarning):
        load_images(f"folder:{folder}", max_bad_files=1)


def test_a_skipped_file_is_one_warning_line_on_the_console(tmp_path, capsys):
    folder = _images(tmp_path / "faces", good=5, bad=1)
    assert main(["measure", f"folder:{folder}", "--train", f"folder:{folder}"]) == 0
    warnings = [ln for ln in capsys.readouterr().err.splitlines() if "broken0.png" in ln]
    assert warnings and all(ln.startswith("archdiff: warning: folder: skipped 1") for ln in warnings)


@pytest.mark.parametrize("argv, message", [
    (["fit", "linear", "--data", "", "--out", "{tmp}/m"], "the data spec is empty"),
    (["fit", "linear", "--data", "npz:{tmp}/complex.npz", "--out", "{tmp}/m"], "complex64"),
    (["fit", "linear", "--data", "lfw", "--seed", "99999999999999999999999", "--out", "{tmp}/m"],
     "out of range"),
    (["fit", "linear", "--data", "lfw", "--out", "{tmp}/file.txt"], "file.txt"),
    (["train", "unet", "--data", "npz:{tmp}", "--out", "{tmp}/m"], "is a folder"),
    (["measure", "lfw", "--train", ""], "the data spec is empty"),
    (["measure", "{tmp}/complex_samples.npz", "--train", "lfw"], "type complex64"),
])
def test_the_model_commands_share_the_data_checks(argv, message, tmp_path, capsys):
    np.savez(tmp_path / "complex.npz", images=np.ones((3, 4, 4), np.complex64))
    np.savez(tmp_path / "complex_samples.npz", samples=np.ones((3, 4, 4), np.complex64))
    (tmp_path / "file.txt").write_text("not a folder")
    assert _status([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("archdiff: error:") and message in err[0], err


# -------------------------------------------------------------------------------- run folders


def test_an_empty_out_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _rejected(FIG2, "", capsys, "--out is empty")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["the root", "below a file"])
def test_an_unwritable_out_is_refused(where, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("mine")
    out = blocker if where == "the root" else blocker / "sub"
    _rejected(FIG2, out, capsys, "cannot write to output folder")
    assert blocker.read_text() == "mine"


def test_a_file_where_the_result_goes_is_refused_before_running(tmp_path, capsys):
    (tmp_path / "fig2-linear-gmm").write_text("mine")
    _rejected(FIG2, tmp_path, capsys, "is a file, not a run folder")
    assert (tmp_path / "fig2-linear-gmm").read_text() == "mine"


def test_a_folder_that_holds_no_run_is_not_replaced(tmp_path, capsys):
    (tmp_path / "fig2-linear-gmm").mkdir()
    (tmp_path / "fig2-linear-gmm" / "notes.txt").write_text("mine")
    _rejected(FIG2, tmp_path, capsys, "holds no run")
    assert (tmp_path / "fig2-linear-gmm" / "notes.txt").read_text() == "mine"


def test_a_file_where_the_run_folder_goes_is_refused(tmp_path, capsys):
    blocker = tmp_path / f".fig2-linear-gmm.partial-{socket.gethostname()}-{os.getpid()}"
    blocker.write_text("mine")
    assert _status([*FIG2, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file, not a run folder" in err
    assert blocker.read_text() == "mine" and not (tmp_path / "fig2-linear-gmm").exists()


def test_a_file_where_a_seed_folder_goes_is_refused(tmp_path, capsys):
    (tmp_path / "seed-3").write_text("mine")
    _rejected([*FIG2, "--seed", "3"], tmp_path, capsys, "cannot write to output folder")


def test_a_full_disk_inside_the_experiment_names_the_file(tmp_path, capsys, monkeypatch):
    from matplotlib.figure import Figure

    def full(self, fname, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))

    monkeypatch.setattr(Figure, "savefig", full)
    assert _status([*FIG2, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and ".png: No space left on device" in err and "resume" in err
    assert not list(tmp_path.rglob(MARKER))


def test_a_full_disk_for_the_summary_names_it(tmp_path, capsys, monkeypatch):
    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name.startswith(".summary.json"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    argv = ["reproduce", "--only", "fig2-linear-gmm", "--quiet", "--set", "n_samples=200", "--set",
            "steps=[10]", "--out", str(tmp_path)]
    assert _status(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"archdiff: error: cannot write {tmp_path / 'summary.json'}: No space left on device"


def test_bad_input_found_while_loading_leaves_no_run_folder(tmp_path, capsys):
    folder = _images(tmp_path / "faces", good=2)
    _rejected([*FIG6, "--data", f"folder:{folder}", "--set", "n_train=3"], tmp_path / "runs", capsys,
              "only 2 available")
    assert not list((tmp_path / "runs").iterdir())


# ------------------------------------------------------------------------------ the CLI's surface


def test_help_describes_lists_the_experiments_and_gives_examples(capsys):
    assert _status(["--help"]) == 0
    text = capsys.readouterr().out
    assert "``" not in text and "examples:" in text and "archdiff reproduce --scale quick" in text
    assert all(f"\n  {exp_id} " in text for exp_id in registry())
    assert _status(["run", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--device {auto,cpu,cuda}\n                        where to compute" in text
    assert "--max-bad-files N" in text and "OUT/seed-N/ID/" in text


def test_list_aligns_the_titles(capsys):
    assert main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    exps = registry()
    assert [ln.split("\t")[0] for ln in lines] == list(exps)  # ID<TAB>... stays machine-readable
    starts = {ln.expandtabs(8).index(e.title) for ln, e in zip(lines, exps.values())}
    assert len(starts) == 1
