"""`netgpt predict --input`: new samples scored in an overlay equal `--ids` after appending them."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from graphstore.append import append_store
from graphstore.build import build_store
from graphstore.store import GraphStore
from graphstore.synth import synthesize
from netgpt.cli import main as netgpt_main
from tests.xsvideo_fixtures import make_tiny_llm


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path, Path, list[str]]:
    """(store of the older samples, a tiny stage-1 run on it, file of the newest samples, their ids)."""
    tmp = tmp_path_factory.mktemp("predict")
    src = tmp / "xs.json"
    synthesize(src, scale=0.0005, seed=6, progress=False)
    records = json.loads(src.read_text())
    order = sorted(records, key=lambda k: (records[k]["当前时间"][:10], k))
    cut = int(len(order) * 0.8)
    base, new = {k: records[k] for k in order[:cut]}, {k: records[k] for k in order[cut:]}
    (tmp / "base.json").write_text(json.dumps(base, ensure_ascii=False))
    (tmp / "new.json").write_text(json.dumps(new, ensure_ascii=False))
    store = build_store(tmp / "base.json", tmp / "store", progress=False)
    run = tmp / "run"
    assert netgpt_main(["train", "--store", str(store), "--out", str(run), "--preset", "cpu", "--d-g", "16",
                        "--fanouts", "3", "3", "--batch-size", "16", "--epochs", "1", "--max-steps", "2",
                        "--no-progress"]) == 0
    return store, run, tmp / "new.json", list(new)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_input_scores_equal_ids_after_append(trained, tmp_path, capsys):
    store, run, new_file, new_ids = trained
    before = sorted(p.name for p in store.iterdir())
    out = tmp_path / "preds.jsonl"
    assert netgpt_main(["predict", "--run", str(run), "--store", str(store), "--input", str(new_file),
                        "--out", str(out), "--no-progress"]) == 0
    overlay = _lines(out)
    assert [r["id"] for r in overlay] == new_ids
    assert all(0 <= r["level"] <= 9 and isinstance(r["score"], float) for r in overlay)
    # the overlay left the store and its folder as they were
    assert GraphStore.open(store).generation == 0 and sorted(p.name for p in store.iterdir()) == before
    assert not list(store.parent.glob("store.overlay-*"))

    appended = tmp_path / "appended"
    shutil.copytree(store, appended)
    append_store(appended, new_file, progress=False)
    capsys.readouterr()
    assert netgpt_main(["predict", "--run", str(run), "--store", str(appended), "--ids", *new_ids, "--json"]) == 0
    by_ids = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert by_ids == overlay


def test_input_append_keeps_samples_and_scores_them_the_same(trained, tmp_path):
    store, run, new_file, new_ids = trained
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert netgpt_main(["predict", "--run", str(run), "--store", str(copy), "--input", str(new_file), "--append",
                        "--out", str(tmp_path / "a.jsonl"), "--no-progress"]) == 0
    grown = GraphStore.open(copy)
    assert grown.generation == 1 and grown.sample_ids()[-len(new_ids):] != [] and set(new_ids) <= set(grown.sample_ids())
    assert netgpt_main(["predict", "--run", str(run), "--store", str(store), "--input", str(new_file),
                        "--out", str(tmp_path / "b.jsonl"), "--no-progress"]) == 0
    assert _lines(tmp_path / "a.jsonl") == _lines(tmp_path / "b.jsonl")


def test_input_already_in_store_is_an_error(trained, tmp_path, capsys):
    store, run, _, _ = trained
    ids = GraphStore.open(store).sample_ids()
    records = json.loads((store.parent / "base.json").read_text())
    (tmp_path / "dup.json").write_text(json.dumps({ids[0]: records[ids[0]]}, ensure_ascii=False))
    assert netgpt_main(["predict", "--run", str(run), "--store", str(store), "--input", str(tmp_path / "dup.json"),
                        "--no-progress"]) == 2
    assert f"sample {ids[0]}" in capsys.readouterr().err
    assert netgpt_main(["predict", "--run", str(run), "--store", str(store), "--ids", "nope"]) == 2


def test_finetuned_run_scores_new_samples(trained, tmp_path):
    """A run with a finished stage 3: new samples get stage-1 embeddings made in the overlay and LLM scores."""
    store, _, new_file, new_ids = trained
    llm = make_tiny_llm(store, tmp_path / "llm", vocab_size=800, hidden=32, layers=2)
    fast = tmp_path / "llm.json"
    fast.write_text(json.dumps({"grad_accum": 1, "engine": "torch", "lr": 1e-3, "top_layers": 1, "max_eval_samples": 2,
                                "max_prompt_tokens": 256, "max_comments": 3}))
    run = tmp_path / "run"
    assert netgpt_main(["train", "--store", str(store), "--out", str(run), "--llm", str(llm), "--llm-config", str(fast),
                        "--llm-max-steps", "1", "--preset", "cpu", "--d-g", "16", "--fanouts", "3", "3",
                        "--batch-size", "16", "--epochs", "1", "--max-steps", "1", "--no-progress"]) == 0
    assert (run / "finetune" / "final.pt").is_file()
    for name in ("a", "b"):
        assert netgpt_main(["predict", "--run", str(run), "--store", str(store), "--input", str(new_file),
                            "--out", str(tmp_path / f"{name}.jsonl"), "--no-progress"]) == 0
    got = _lines(tmp_path / "a.jsonl")
    assert [r["id"] for r in got] == new_ids and all(0 <= r["level"] <= 9 for r in got)
    assert got == _lines(tmp_path / "b.jsonl")
    assert len({r["score"] for r in got}) > 1, "every new sample got the same score"


def test_append_with_an_unwritable_out_commits_nothing(trained, tmp_path, capsys):
    store, run, new_file, new_ids = trained
    copy = tmp_path / "copy"
    shutil.copytree(store, copy)
    assert netgpt_main(["predict", "--run", str(run), "--store", str(copy), "--input", str(new_file), "--append",
                        "--out", str(tmp_path / "missing" / "p.jsonl"), "--no-progress"]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert GraphStore.open(copy).generation == 0  # nothing committed: a rerun with a good --out is not refused
    assert netgpt_main(["predict", "--run", str(run), "--store", str(copy), "--input", str(new_file), "--append",
                        "--out", str(tmp_path / "p.jsonl"), "--no-progress"]) == 0
    assert [r["id"] for r in _lines(tmp_path / "p.jsonl")] == new_ids and GraphStore.open(copy).generation == 1
