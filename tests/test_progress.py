"""One progress vocabulary: tqdm bars on the long steps, `--no-progress` turns them all off (issue 24).

The LLM stages report like stage 1 (one bar per stage, loss in the postfix, only rank 0 shows it) and
print one summary line per stage, bars or not; `graphstore build` (and synth, sample) take --no-progress;
--seed and --threads read the same on both command lines."""
from __future__ import annotations

import argparse
import json
import re

import pytest

import graphstore.cli
import netgpt.cli
from tests.test_llm import FAST, fresh_run, llm_dir, stage1_run, store_path  # noqa: F401 (fixtures)
from tests.xsvideo_fixtures import make_records, write_xsvideo

BAR = re.compile(r"\d+%\|")  # a tqdm bar ("NN%|"): ours, and Hugging Face's (tqdm too)
STEPS = 3


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def _train(run: argparse.Namespace, *flags: str, stage: str = "all", steps: int = STEPS) -> int:
    return netgpt.cli.main(["train", "--stage", stage, "--store", str(run.store), "--llm", str(run.llm),
                            "--llm-config", str(run.config), "--llm-max-steps", str(steps), "--out", str(run.dir),
                            *flags])


@pytest.fixture()
def run(stage1_run, store_path, llm_dir, tmp_path) -> argparse.Namespace:  # noqa: F811
    """A fresh run directory with a finished stage 1 (`--stage all` goes straight to stages 2-3), its store,
    the tiny LLM and a fast LLM config."""
    config = tmp_path / "llm.json"
    config.write_text(json.dumps(FAST))
    return argparse.Namespace(dir=fresh_run(stage1_run, tmp_path / "run"), store=store_path, llm=llm_dir,
                              config=config)


def test_llm_stages_without_progress_print_one_line_per_stage(run, capfd):
    assert _train(run, "--no-progress") == 0
    out, err = capfd.readouterr()
    assert not BAR.search(err), err  # no bar at all, not even Hugging Face's weight-loading one
    lines = _lines(out) + _lines(err)
    assert len(lines) < 20, lines
    summaries = [line for line in _lines(out) if line.startswith(("align:", "finetune:"))]
    assert [s.split(":")[0] for s in summaries] == ["align", "finetune"], out
    assert f"{STEPS} steps" in summaries[0] and "last loss" in summaries[0]
    assert "; val acc " in summaries[1] and "; test acc " in summaries[1]
    # the per-step record is still written in full
    for stage in ("align", "finetune"):
        records = [json.loads(line) for line in (run.dir / stage / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in records] == list(range(1, STEPS + 1))
        assert set(records[0]) == {"step", "loss", "lr", "grad_norm", "seconds"}


def test_llm_stages_with_progress_show_a_bar_not_a_line_per_step(run, capfd):
    assert _train(run) == 0
    out, err = capfd.readouterr()
    assert not re.search(r"step \d+/\d+", out), out  # the old one-line-per-step report
    assert _lines(out) == [line for line in _lines(out) if line.startswith(("align:", "finetune:"))], out
    assert len(_lines(out)) == 2
    for stage in ("align", "finetune"):
        assert re.search(rf"{stage}: 100%\|.*\| {STEPS}/{STEPS} \[.*loss=\d", err), err  # one bar, loss in the postfix
    assert err.count("\n") < 10, err  # bars redraw in place (\r), they add no line per step


def test_only_rank_0_shows_a_bar(run, capfd, monkeypatch):
    from netgpt.llm import stages

    monkeypatch.setattr(stages, "rank_world", lambda: (1, 1))  # as a DeepSpeed rank other than 0 sees it
    assert _train(run, stage="align", steps=1) == 0
    out, err = capfd.readouterr()
    assert not BAR.search(err), err
    assert not _lines(out), out  # the summary line is rank 0's too


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    return write_xsvideo(tmp_path_factory.mktemp("progress") / "xs.json", make_records(12, seed=2))


def test_build_takes_no_progress_and_shows_no_bar(source, tmp_path, capfd):
    assert graphstore.cli.main(["build", "--input", str(source), "--out", str(tmp_path / "quiet"),
                                "--text-dim", "8", "--no-progress"]) == 0
    out, err = capfd.readouterr()
    assert not BAR.search(err) and "ingest" not in err and "featurize" not in err, err
    assert out.startswith("built ")
    # the control: without the flag the same build does show its bars
    assert graphstore.cli.main(["build", "--input", str(source), "--out", str(tmp_path / "loud"),
                                "--text-dim", "8"]) == 0
    err = capfd.readouterr().err
    assert re.search(r"ingest: 100%\|", err) and re.search(r"featurize: 100%\|", err), err


def test_no_progress_also_turns_off_duckdbs_own_bar(tmp_path):
    from graphstore.build import connect_staging

    import duckdb

    setting = "SELECT current_setting('enable_progress_bar')"
    default = duckdb.connect().execute(setting).fetchone()[0]  # DuckDB's own choice (it depends on the terminal)
    for progress, expected in ((False, False), (True, default)):
        (tmp_path / str(progress)).mkdir()
        con = connect_staging(tmp_path / str(progress), "1GB", 1, progress=progress)
        assert con.execute(setting).fetchone()[0] is expected
        con.close()


def test_synth_takes_no_progress(tmp_path, capfd):
    assert graphstore.cli.main(["synth", "--scale", "0.0005", "--out", str(tmp_path / "x.json"), "--no-progress"]) == 0
    assert not BAR.search(capfd.readouterr().err)


def _options(parser: argparse.ArgumentParser) -> dict[str, dict[str, argparse.Action]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {name: {o: a for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def test_every_command_with_bars_takes_no_progress_and_seed_threads_read_alike():
    graphstore_commands = _options(graphstore.cli.build_parser())
    netgpt_commands = _options(netgpt.cli.build_parser("netgpt", "netgpt.commands", netgpt.cli.COMMANDS))
    for name in ("synth", "build", "append", "featurize", "sample"):
        assert "--no-progress" in graphstore_commands[name], name
    assert "--no-progress" in netgpt_commands["train"]
    for commands in (graphstore_commands, netgpt_commands):
        for name, options in commands.items():
            if "--seed" in options:
                assert options["--seed"].help.startswith("seed of every random choice"), (name, options["--seed"].help)
            if "--threads" in options:
                text = options["--threads"].help
                assert text.startswith("thread count") and "default: all cores" in text, (name, text)
