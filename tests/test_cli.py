"""The command lines as a user meets them: every mistake gets one or two lines that name the problem
and the fix, no traceback, a non-zero exit, and nothing lost; run folders are never reused for
another configuration. Each case runs the real command in a subprocess."""

from __future__ import annotations

import fcntl
import gzip
import json
import os
import sys
import subprocess
from pathlib import Path

import pytest

from ropelib.config import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "ROPELIB_SMOKE": "0", "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
TINY = ["--dataset", "synthetic", "--synthetic-grid", "3", "--synthetic-classes", "4", "--synthetic-epoch-size",
        "256", "--synthetic-test-size", "64", "--preset", "custom", "--img-size", "12", "--patch-size", "4",
        "--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--head-dim", "8", "--encoding", "axial",
        "--epochs", "2", "--batch-size", "32", "--warmup-epochs", "0.5", "--device", "cpu", "--no-progress",
        "--log-every", "2"]


def run(module: str, *args, cwd=None, env=ENV, timeout=300):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=timeout)


def train(tmp_path, *args):
    return run("ropelib.train", *TINY, "--out-dir", tmp_path / "runs", *args)


def refused(result, *phrases, code=2):
    """A clear refusal: the exit code, one or two lines of error, each phrase in them, no traceback."""
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert 1 <= len(lines) <= 2, result.stderr
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)


@pytest.mark.parametrize("args, phrases", [
    (["--epoch", "2"], ["unknown option --epoch", "did you mean --epochs?"]),
    (["--epochs", "0"], ["--epochs must be at least 1, got 0"]),
    (["--epochs", "-1"], ["--epochs must be at least 1"]),
    (["--batch-size", "0"], ["--batch-size must be at least 1"]),
    (["--lr", "-0.1"], ["--lr must be positive"]),
    (["--encoding", "spherica"], ["--encoding 'spherica' is not one of", "did you mean spherical?"]),
    (["--img-size", "14"], ["--img-size 14 is not divisible by --patch-size 4"]),
    (["--eval-resolutions", "[30]"], ["--eval-resolutions: 30 is not a positive multiple of the patch size 4"]),
    (["--encoding", "liere", "--head-dim", "12"], ["liere: head_dim=12 must be divisible by 8", "set --head-dim"]),
    (["--encoding", "spherical", "--head-dim", "8"], ["divisible by 3", "set --head-dim, e.g. 9"]),
    (["--encoding-options", "{thetaa: 3}"], ["unknown option(s) 'thetaa'", "--encoding-options"]),
    (["--betas", "0.9"], ["--betas", "expected a list"]),
    (["--optimizer", "sgd"], ["--optimizer must be one of adamw, adam, lamb"]),
    (["--recipe", "cifar"], ["unknown recipe 'cifar'; available:"]),
    (["--synthetic-grid", "4"], ["set --img-size 16"]),
])
def test_configuration_mistakes_are_refused_before_any_data_is_read(tmp_path, args, phrases):
    refused(train(tmp_path, *args), *phrases)
    assert not (tmp_path / "runs").exists()  # nothing was started, nothing written


def test_offline_download_is_one_clear_line_and_leaves_nothing_behind(tmp_path):
    # a proxy that refuses connections: urllib fails as it would offline, wherever this runs
    env = {**ENV, "http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9"}
    result = run("ropelib.train", "--recipe", "colab-cifar10", "--data-dir", tmp_path / "data", "--download",
                 "--epochs", "1", "--device", "cpu", "--out-dir", tmp_path / "runs", env=env)
    refused(result, "cifar10: downloading", "failed", "download that file by hand", code=1)
    assert not any(p.name.startswith("cifar-10") for p in (tmp_path / "data").glob("*"))


def test_a_truncated_archive_leaves_no_half_extracted_folder(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "cifar-10-python.tar.gz").write_bytes(gzip.compress(b"x" * 5000)[:300])
    result = run("ropelib.train", "--recipe", "colab-cifar10", "--data-dir", data, "--epochs", "1", "--device",
                 "cpu", "--out-dir", tmp_path / "runs")
    refused(result, "is corrupt or incomplete", "download it again", code=1)
    assert sorted(p.name for p in data.iterdir()) == ["cifar-10-python.tar.gz"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished two-epoch run (and its command-line output)."""
    tmp_path = tmp_path_factory.mktemp("finished")
    result = train(tmp_path, "--run-name", "done", "--eval-resolutions", "[16]")
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp_path, result


def test_a_run_says_where_it_writes_and_keeps_best_and_last(finished):
    tmp_path, result = finished
    folder = tmp_path / "runs" / "done"
    assert f"-> {folder}" in result.stdout
    assert "test at 12 px" in result.stdout and "test at 16 px" in result.stdout  # the final evaluation's progress
    assert {"checkpoint.pt", "best.pt", "model.pt", "config.json", "metrics.jsonl", "results.json"} <= {
        p.name for p in folder.iterdir()}
    results = json.loads((folder / "results.json").read_text())
    assert results["best"]["top1"] == max(json.loads(line)["test"]["top1"]
                                          for line in (folder / "metrics.jsonl").read_text().splitlines())


@pytest.mark.parametrize("args, phrases", [
    (["--lr", "0.01"], ["holds a run with other settings (lr 0.001 -> 0.01)", "--run-name"]),
    (["--epochs", "3"], ["epochs 2 -> 3"]),  # a longer schedule is a different run, not a continuation
    (["--encoding", "mixed"], ["model.encoding 'axial' -> 'mixed'"]),
    (["--no-resume"], ["already holds a run; --no-resume does not overwrite it"]),
])
def test_a_finished_run_folder_is_never_reused_for_other_settings(finished, args, phrases):
    tmp_path, _ = finished
    folder = tmp_path / "runs" / "done"
    before = {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != ".lock"}
    refused(train(tmp_path, "--run-name", "done", "--eval-resolutions", "[16]", *args), *phrases)
    assert before == {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.name != ".lock"}  # untouched


def test_rerunning_a_finished_run_changes_nothing(finished):
    tmp_path, _ = finished
    folder = tmp_path / "runs" / "done"
    results = (folder / "results.json").read_text()
    again = train(tmp_path, "--run-name", "done", "--eval-resolutions", "[16]")
    assert again.returncode == 0 and "is finished" in again.stdout
    assert (folder / "results.json").read_text() == results


def test_two_processes_never_write_into_one_folder(tmp_path):
    folder = tmp_path / "runs" / "busy"
    folder.mkdir(parents=True)
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("4242")
        lock.flush()
        refused(train(tmp_path, "--run-name", "busy"), "another process (pid 4242) is writing to")


def test_dry_run_prints_the_config_and_parameter_counts_and_reads_nothing(tmp_path):
    result = train(tmp_path, "--dry-run")
    assert result.returncode == 0, result.stderr
    config = json.loads(result.stdout[: result.stdout.rindex("}") + 1])
    assert TrainConfig.from_dict(config).model.encoding == "axial"
    assert "parameters:" in result.stdout and "position encoding:" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_help_shows_every_option_with_its_description_and_default():
    result = run("ropelib.train", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("--epochs", "--head-dim", "--encoding-options", "--mlp-ratio", "--qkv-bias", "--class-token",
                   "--in-chans", "--num-workers", "--dry-run"):
        assert option in text, option
    assert "training epochs (the cosine schedule spans them) (default: 100)" in text
    assert "MLP hidden width / embed_dim (default: 4.0)" in text


def test_num_workers_defaults_to_the_machine():
    assert TrainConfig().workers == min(8, os.cpu_count() or 1)
    assert TrainConfig(num_workers=0).workers == 0


def test_evaluate_refuses_bad_input_clearly(finished, tmp_path):
    runs, _ = finished
    model = runs / "runs" / "done" / "model.pt"
    refused(run("ropelib.evaluate", model, "--resolutions", "0"), "--resolutions 0", "multiple of")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    refused(run("ropelib.evaluate", tmp_path / "notes.pt", "--resolutions", "12"), "is not a ropelib model.pt")
    refused(run("ropelib.evaluate", tmp_path / "missing.pt", "--resolutions", "12"), "does not exist")


def test_evaluations_do_not_overwrite_each_other(finished, tmp_path):
    runs, _ = finished
    model = runs / "runs" / "done" / "model.pt"
    for _ in range(2):
        result = run("ropelib.evaluate", model, "--resolutions", "12", "16", "--protocols", "native",
                     "interpolate", "--out", tmp_path)
        assert result.returncode == 0, result.stderr
        assert "interpolate    16 px" in result.stdout  # progress, resolution by resolution
    assert (tmp_path / "evaluation.json").exists() and (tmp_path / "evaluation-2.json").exists()
    record = json.loads((tmp_path / "evaluation-2.json").read_text())
    assert record["accuracy"].keys() == {"native", "interpolate"}


def test_epoch_speed_and_loss_count_the_whole_epoch(tmp_path):
    """With a checkpoint at every loss check, the epoch's img/s still covers the whole epoch (it
    used to divide the epoch's images by the time since the last checkpoint)."""
    result = train(tmp_path, "--run-name", "often", "--checkpoint-minutes", "0")
    assert result.returncode == 0, result.stderr
    for line in (tmp_path / "runs" / "often" / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        assert record["steps"] == 8
        images = record["images_per_second"] * record["train_seconds"]
        assert abs(images - 256) < 0.05 * 256, record
