"""Runs that stop resume: a killed run's folder is adopted by the same command and its training continues
from the checkpoints (bit for bit on the CPU); a swap stopped half way leaves a finished result; seeds
have folders of their own; the console names what runs and sums a sweep up."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from archdiff import runner
from archdiff.cli import main
from archdiff.experiments import Claim, Experiment, Result

THM4 = ["run", "thm4-sgd-linear", "--quiet", "--set", "epochs=300", "--set", "n_train=300"]
FIG2 = ["run", "fig2-linear-gmm", "--quiet", "--set", "n_samples=200", "--set", "steps=[10]"]


def _metrics(run_dir: Path) -> tuple[dict, list]:
    record = json.loads((run_dir / "metrics.json").read_text())
    return record["metrics"], record["claims"]


def _kill_after_first_checkpoint(out: Path) -> None:
    """Start thm4 as a process of its own and SIGKILL it as soon as its first checkpoint exists."""
    proc = subprocess.Popen([sys.executable, "-m", "archdiff", *THM4, "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while not list(out.glob(".thm4-sgd-linear.partial-*/model/checkpoint.safetensors")):
            assert proc.poll() is None, "the run ended before its first checkpoint"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_a_killed_run_resumes_and_ends_as_an_uninterrupted_one(tmp_path, capsys):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    _kill_after_first_checkpoint(killed)
    assert not (killed / "thm4-sgd-linear").exists()
    assert main([*THM4, "--out", str(killed)]) == 0
    out = capsys.readouterr().out
    assert "resuming thm4-sgd-linear" in out and "model at epoch" in out and "of 300" in out
    assert main([*THM4, "--out", str(whole)]) == 0
    assert "resuming" not in capsys.readouterr().out
    assert _metrics(killed / "thm4-sgd-linear") == _metrics(whole / "thm4-sgd-linear")  # bit-identical
    assert not list(killed.glob(".*"))  # the adopted folder became the result


def _tiny(value: float = 0.5) -> Experiment:
    def run(ctx):
        (ctx.work / "scratch").mkdir(parents=True, exist_ok=True)  # kept only while it runs
        return Result({"value": value}, [Claim.at_most("small", "value is small", value, 1.0)])

    return Experiment("tiny", "a tiny experiment", "the paper says", {"quick": {"value": value}}, run)


def _stop_at_rename(monkeypatch, source_name: str) -> None:
    """Make the runner's rename of a folder named ``source_name`` stop the process (as a kill would)."""
    real = os.replace

    def replace(src, dst):
        if Path(src).name == source_name:
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(runner.os, "replace", replace)


def test_a_swap_stopped_between_its_renames_leaves_a_finished_result(tmp_path, monkeypatch):
    runner.run_experiment(_tiny(0.25), out=tmp_path, progress=False)
    partial = f".tiny.partial-{runner._process_tag()}"
    _stop_at_rename(monkeypatch, partial)  # the old result is aside, the new one not yet in place
    with pytest.raises(KeyboardInterrupt):
        runner.run_experiment(_tiny(0.75), out=tmp_path, progress=False)
    monkeypatch.undo()
    finished = [p for p in tmp_path.iterdir() if runner.is_finished(p)]
    assert len(finished) == 2 and not (tmp_path / "tiny").exists()  # both results, neither lost
    assert not (tmp_path / partial / ".work").exists()  # the work folder went before the swap
    runner.recover(tmp_path, "tiny")  # what the next run of the experiment does first
    assert _metrics(tmp_path / "tiny")[0] == {"value": 0.75}  # the newest result is put in place
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_a_swap_stopped_before_deleting_the_old_result_is_cleaned_up(tmp_path, monkeypatch):
    runner.run_experiment(_tiny(0.25), out=tmp_path, progress=False)
    monkeypatch.setattr(runner.shutil, "rmtree", lambda *a, **k: None)  # the old result is never deleted
    runner.run_experiment(_tiny(0.75), out=tmp_path, progress=False)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.glob(".tiny.old-*")]
    runner.run_experiment(_tiny(0.75), out=tmp_path, progress=False, log=lambda _: None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", ""])
    proc.wait()
    return proc.pid


def test_a_stopped_run_of_other_settings_is_not_resumed(tmp_path):
    stopped = tmp_path / f".tiny.partial-{socket.gethostname()}-{_dead_pid()}"
    stopped.mkdir()
    (stopped / "config.toml").write_text('experiment = "tiny"\nscale = "quick"\nseed = 7\n')
    logs = []
    runner.run_experiment(_tiny(), out=tmp_path, progress=False, log=logs.append)
    assert logs == [] and sorted(p.name for p in tmp_path.iterdir()) == ["tiny"]


def test_a_live_process_folder_is_left_alone(tmp_path):
    live = tmp_path / f".tiny.partial-{socket.gethostname()}-{os.getppid()}"
    live.mkdir()
    runner.run_experiment(_tiny(), out=tmp_path, progress=False, log=lambda _: None)
    assert live.is_dir() and runner.is_finished(tmp_path / "tiny")


def test_a_full_disk_keeps_the_run_and_the_same_command_resumes_it(tmp_path, monkeypatch, capsys):
    import errno

    real = Path.write_text

    def full(self, *args, **kwargs):
        if self.name == "metrics.json":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full)
    assert main([*FIG2, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "metrics.json: No space left on device" in err
    kept = list(tmp_path.glob(".fig2-linear-gmm.partial-*"))
    assert len(kept) == 1 and not runner.is_finished(kept[0]) and str(kept[0]) in err
    monkeypatch.undo()
    assert main([*FIG2, "--out", str(tmp_path)]) == 0
    assert "resuming fig2-linear-gmm" in capsys.readouterr().out
    assert runner.is_finished(tmp_path / "fig2-linear-gmm") and not list(tmp_path.glob(".fig2*"))


def test_another_seed_has_a_folder_of_its_own(tmp_path, capsys):
    assert main([*FIG2, "--out", str(tmp_path)]) == 0
    seed0 = (tmp_path / "fig2-linear-gmm" / "metrics.json").read_text()
    assert main([*FIG2, "--seed", "1", "--out", str(tmp_path)]) == 0
    assert f"wrote {tmp_path / 'seed-1' / 'fig2-linear-gmm'}/" in capsys.readouterr().out
    assert (tmp_path / "fig2-linear-gmm" / "metrics.json").read_text() == seed0  # untouched
    assert json.loads((tmp_path / "seed-1" / "fig2-linear-gmm" / "metrics.json").read_text())["seed"] == 1


def test_reproduce_prints_each_run_and_a_final_table(tmp_path, capsys):
    argv = ["reproduce", "--only", "fig2-linear-gmm", "--quiet", "--set", "n_samples=200", "--set",
            "steps=[10]", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    done = next(ln for ln in out.splitlines() if ln.startswith("[done] fig2-linear-gmm"))
    assert " s, " in done and "claims hold" in done
    lines = out.splitlines()
    table = lines[next(i for i, ln in enumerate(lines) if ln.startswith("experiment ")):]
    assert table[0].split() == ["experiment", "seconds", "claims", "holding"]
    assert table[1].startswith("fig2-linear-gmm ") and table[2].startswith("total ")
    assert main([*FIG2, "--set", "n_samples=100", "--out", str(tmp_path)]) == 0  # other settings
    assert "summary.json and report.html describe the old one" in capsys.readouterr().out


def test_output_that_is_no_terminal_gets_one_line_per_stage_and_bars_name_the_model(tmp_path, capsys,
                                                                                  monkeypatch):
    from archdiff import training

    labels = []
    real = training.tqdm
    monkeypatch.setattr(training, "tqdm", lambda *a, **k: labels.append(k["desc"]) or real(*a, **k))
    argv = ["run", "fig9-mlp-width", "--set", "epochs=2", "--set", "n_samples=8", "--set", "steps=2",
            "--set", "width_fractions=[1.0, 0.2]", "--out", str(tmp_path)]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "\r" not in err
    assert "  training image_mlp (width 100): 2 epochs" in err.splitlines()
    assert "  sampling image_mlp (width 20): 16 samples, 2 steps" in err.splitlines()
    assert labels == ["training image_mlp (width 100)", "training image_mlp (width 20)"]
    assert not (tmp_path / "fig9-mlp-width" / ".work").exists()
