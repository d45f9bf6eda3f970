"""No traceback for a mistake or a fault of the machine; argument types that say what is wrong (issue 24)."""
from __future__ import annotations

import argparse
import errno
import os

import numpy as np
import pytest

from graphstore.build import build_store
from graphstore.cli import environment_fault, main, memory_size
from netgpt.cli import main as netgpt_main
from tests.xsvideo_fixtures import make_records, write_xsvideo


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """(store with features, store built with --no-features) of one small input."""
    work = tmp_path_factory.mktemp("cli_faults")
    src = write_xsvideo(work / "in.json", make_records(24, seed=5))
    full = build_store(src, work / "full", progress=False)
    bare = build_store(src, work / "bare", featurize=False, progress=False)
    return full, bare


def _usage_error(capsys, argv, netgpt=False) -> str:
    assert (netgpt_main if netgpt else main)(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- argument types ----------------------------------------------------------------------------
@pytest.mark.parametrize("argv, says", [
    (["sample", "S", "--seed", "-1"], "not a valid seed"),
    (["synth", "--out", "x.json", "--seed", "-1"], "not a valid seed"),
    (["sample", "S", "--threads", "-1"], "not a positive integer"),
    (["append", "S", "--input", "x", "--threads", "0"], "not a positive integer"),
    (["build", "--input", "x", "--out", "y", "--memory-limit", "abc"], "not a memory size"),
    (["append", "S", "--input", "x", "--memory-limit", "1MB"], "too small"),
    (["synth", "--out", "x.json", "--scale", "nan"], "not a positive number"),
    (["synth", "--out", "x.json", "--scale", "-1"], "not a positive number"),
    (["sample", "S", "--fanouts", "-2,5"], "expected one integer >= -1"),
])
def test_bad_arguments_are_usage_errors_that_name_the_option(capsys, argv, says):
    err = _usage_error(capsys, argv)
    assert says in err and argv[-2] in err


def test_netgpt_seeds_are_checked_too(capsys):
    assert "not a valid seed" in _usage_error(capsys, ["train", "S", "--out", "r", "--seed", "-3"], netgpt=True)
    assert "not a valid seed" in _usage_error(capsys, ["baselines", "S", "--out", "r", "--seeds", "1", "-2"],
                                              netgpt=True)


@pytest.mark.parametrize("argv", [["--fanouts", "-1,5"], ["--fanouts", "-1", "5"], ["--fanouts=-1,5"]])
def test_fanouts_take_minus_one_in_either_form(argv):
    from graphstore.cli import build_parser

    assert build_parser().parse_args(["sample", "S", *argv]).fanouts == [-1, 5]
    netgpt = build_parser("netgpt", "netgpt.commands", ("train",), None)
    assert netgpt.parse_args(["train", "S", "--out", "r", *argv]).fanouts == [-1, 5]


def test_memory_sizes_come_out_in_duckdb_spelling():
    import duckdb

    con = duckdb.connect()
    for text, bytes_ in [("3GB", 3e9), ("512MiB", 2**29), ("2.5GB", 2.5e9), ("20000000", 2e7), ("1tib", 2**40)]:
        value = memory_size(text)
        con.execute(f"SET memory_limit='{value}'")
        assert con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        assert abs(_bytes(value) - bytes_) < 1
    for bad in ("", "1e9", "-1GB", "3 XB", "3GB; DROP TABLE x"):
        with pytest.raises(argparse.ArgumentTypeError):
            memory_size(bad)


def _bytes(value: str) -> float:
    units = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}
    unit = next(u for u in sorted(units, key=len, reverse=True) if value.endswith(u))
    return float(value[:-len(unit)]) * units[unit]


# --- the top-level handler ---------------------------------------------------------------------
def _failing(monkeypatch, exc: BaseException) -> None:
    """`graphstore info` raising `exc` from inside the command."""
    import graphstore.commands.info as info

    def boom(args):
        raise exc
    monkeypatch.setattr(info, "run", boom)


@pytest.mark.parametrize("exc, says", [
    (OSError(errno.ENOSPC, "No space left on device", "/data/store/topology/c/0"), "no space left on the device"),
    (PermissionError(errno.EACCES, "Permission denied", "/data/store"), "permission denied: /data/store"),
    (OSError(errno.EIO, "Input/output error"), "input/output error"),
    (MemoryError(), "out of memory"),
])
def test_faults_of_the_machine_are_one_line_and_exit_1(monkeypatch, capsys, exc, says):
    _failing(monkeypatch, exc)
    assert main(["info", "S"]) == 1
    err = capsys.readouterr().err
    assert says in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_a_fault_wrapped_by_a_library_is_still_a_fault(monkeypatch, capsys):
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device", "/x")
        except OSError as inner:
            raise RuntimeError("zarr could not store chunk") from inner
    except RuntimeError as outer:
        _failing(monkeypatch, outer)
    assert main(["info", "S"]) == 1
    assert "no space left" in capsys.readouterr().err


def test_duckdb_io_and_memory_errors_are_faults():
    import duckdb

    assert "DuckDB could not read or write" in environment_fault(duckdb.IOException("IO Error: disk full"))
    assert "--memory-limit" in environment_fault(duckdb.OutOfMemoryException("Out of Memory Error: x"))
    assert environment_fault(duckdb.BinderException("Binder Error: no column")) is None


def test_a_bug_shows_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys):
    _failing(monkeypatch, KeyError("features"))
    assert main(["info", "S"]) == 70
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError" in err and "this is a bug in graphstore" in err


# --- outputs checked before any work -----------------------------------------------------------
def test_synth_replaces_only_its_own_file(tmp_path, capsys):
    out = tmp_path / "xs.json"
    assert main(["synth", "--scale", "0.0005", "--out", str(out)]) == 0
    first = out.read_bytes()
    assert "pass --overwrite" in _usage_error(capsys, ["synth", "--scale", "0.0005", "--seed", "1", "--out", str(out)])
    assert out.read_bytes() == first
    assert main(["synth", "--scale", "0.0005", "--seed", "1", "--out", str(out), "--overwrite"]) == 0
    assert out.read_bytes() != first
    mine = tmp_path / "thesis.json"
    mine.write_text("years of work")
    err = _usage_error(capsys, ["synth", "--out", str(mine), "--overwrite"])
    assert "not written by `graphstore synth`" in err and mine.read_text() == "years of work"


@pytest.mark.parametrize("name, says", [("-", "standard output"), ("/dev/null", "not a regular file"),
                                        ("link", "symbolic link"), ("missing/x.json", "does not exist")])
def test_synth_out_that_is_no_file_to_write(tmp_path, capsys, name, says):
    (tmp_path / "target.json").write_text("keep")
    os.symlink(tmp_path / "target.json", tmp_path / "link")
    out = name if name.startswith(("-", "/")) else str(tmp_path / name)
    assert says in _usage_error(capsys, ["synth", "--out", out, "--overwrite"])
    assert (tmp_path / "target.json").read_text() == "keep"


def test_synth_at_a_tiny_scale_reports_its_counts(tmp_path, capsys):
    assert main(["synth", "--scale", "1e-300", "--out", str(tmp_path / "x.json"), "--json"]) == 0
    assert '"videos": 20' in capsys.readouterr().out


def test_train_out_refuses_a_store_a_place_inside_it_a_file_and_other_directories(stores, tmp_path, capsys):
    full, _ = stores
    before = sorted(p.name for p in full.iterdir())
    assert "is a graphstore" in _usage_error(capsys, ["train", str(full), "--out", str(full)], netgpt=True)
    assert "inside the graphstore" in _usage_error(capsys, ["train", str(full), "--out", str(full / "run")],
                                                   netgpt=True)
    assert sorted(p.name for p in full.iterdir()) == before
    (tmp_path / "notes.txt").write_text("mine")
    assert "not a run" in _usage_error(capsys, ["train", str(full), "--out", str(tmp_path)], netgpt=True)
    assert "is a file" in _usage_error(capsys, ["train", str(full), "--out", str(tmp_path / "notes.txt")],
                                       netgpt=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_rejected_train_options_leave_no_run_directory(stores, tmp_path, capsys):
    full, bare = stores
    run = tmp_path / "run"
    assert "--feature-cache must be one of" in _usage_error(
        capsys, ["train", str(full), "--out", str(run), "--feature-cache", "bogus"], netgpt=True)
    assert "has no features" in _usage_error(capsys, ["train", str(bare), "--out", str(run)], netgpt=True)
    assert "nothing to resume" in _usage_error(capsys, ["train", str(full), "--out", str(run), "--resume"],
                                               netgpt=True)
    assert not run.exists()


def test_predict_out_inside_a_store_is_refused(stores, tmp_path, capsys):
    full, _ = stores
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    (run / "pretrain" / "best.pt").write_bytes(b"")  # never read: the --out check comes first
    err = _usage_error(capsys, ["predict", "--run", str(run), "--store", str(full), "--ids", "0",
                                "--out", str(full / "p.jsonl")], netgpt=True)
    assert "inside the graphstore" in err and not (full / "p.jsonl").exists()


def test_sample_with_no_relation_named_is_refused(stores, capsys):
    full, _ = stores
    assert "names no relation" in _usage_error(capsys, ["sample", str(full), "--relations", ",", "--batches", "1",
                                                         "--batch-size", "4"])


def test_eval_of_an_empty_split_says_so(stores, tmp_path, capsys):
    from netgpt.run_files import write_predictions

    full, _ = stores
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    none = np.zeros(0, np.int64)
    write_predictions(run / "pretrain" / "predictions_val.parquet", none, [], none, none)
    err = _usage_error(capsys, ["eval", "--run", str(run), "--store", str(full), "--split", "val"], netgpt=True)
    assert "holds no predictions" in err and not (run / "pretrain" / "eval_val.json").exists()
