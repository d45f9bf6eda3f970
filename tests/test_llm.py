"""NetGPT stages 2 and 3 on a tiny Qwen2 model: prompt limits, graph token path, gradients, resume."""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from graphstore.build import build_store
from graphstore.errors import UserError
from graphstore.store import GraphStore
from netgpt.llm.config import LLMConfig
from netgpt.llm.model import decoder_layers
from netgpt.llm.prompt import PROMPT_FIELDS, RESPONSE, sample_record
from netgpt.llm.tokens import GRAPH_PAD
from tests.xsvideo_fixtures import file_digests, make_records, make_tiny_llm, write_xsvideo

D_G = 16
FAST = {"grad_accum": 2, "engine": "torch", "lr": 1e-3, "checkpoint_every": 1, "max_eval_samples": 6,
        "warmup_ratio": 0.0}


@pytest.fixture(scope="session")
def store_path(tmp_path_factory) -> Path:
    """A small featurized store with non-empty splits."""
    tmp = tmp_path_factory.mktemp("llm")
    src = write_xsvideo(tmp / "in.json", make_records(30, seed=3))
    return build_store(src, tmp / "store", progress=False, cutoff="2024-11-20", val_days=6)


@pytest.fixture(scope="session")
def stage1_run(store_path, tmp_path_factory) -> Path:
    """A tiny finished stage-1 run with its embeddings (what stages 2-3 start from)."""
    from netgpt.config import preset
    from netgpt.embed import run_embed
    from netgpt.train_gnn import run_pretrain

    run = tmp_path_factory.mktemp("stage1") / "run"
    cfg = preset("default", d_g=D_G, fanouts=[2, 2], batch_size=16, epochs=1, max_steps=1, max_eval_batches=1,
                 embed_fanout=3)
    run_pretrain(run, store_path, cfg, progress=False)
    run_embed(run, store_path, progress=False)
    return run


def fresh_run(stage1_run: Path, path: Path) -> Path:
    """A new run directory holding a copy of the stage-1 run (its model and embeddings)."""
    shutil.copytree(stage1_run, path)
    return path


@pytest.fixture(scope="session")
def llm_dir(store_path, tmp_path_factory) -> Path:
    return make_tiny_llm(store_path, tmp_path_factory.mktemp("tiny") / "llm", vocab_size=800, hidden=32, layers=4)


@pytest.fixture()
def setup(store_path, llm_dir, stage1_run):
    from netgpt.llm.stages import setup as make_setup

    return make_setup(store_path, llm_dir, stage1_run, LLMConfig(), device=torch.device("cpu"))


def test_tiny_llm_is_a_normal_hf_dir(llm_dir):
    from transformers import AutoConfig, AutoTokenizer

    assert AutoConfig.from_pretrained(llm_dir).model_type == "qwen2"
    tok = AutoTokenizer.from_pretrained(llm_dir)
    assert tok.chat_template and "<|im_start|>" in tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False)


def test_prompt_never_contains_the_label(setup):
    texts = setup.maker.texts
    keys = {f[1] for f in PROMPT_FIELDS} | {"评论"}
    for node in range(len(texts)):
        assert set(texts.record(node)) == keys
    nodes = np.arange(len(texts))
    before = setup.maker.batch(nodes, with_response=False)
    texts.levels = (texts.levels + 3) % 10  # a leaked label would change the prompt
    after = setup.maker.batch(nodes, with_response=False)
    assert torch.equal(before.input_ids, after.input_ids)
    decoded = setup.tokenizer.decode(before.input_ids[0])
    assert RESPONSE.split("{")[0].strip() not in decoded and "level" not in json.loads(texts.text(0))


def test_prompt_keeps_at_most_50_comments_seeded():
    comments = [{"text": f"c{i}", "time": f"t{i}"} for i in range(120)]
    rec = sample_record({}, comments, node=7, seed=1)
    kept = [c["评论内容"] for c in rec["评论"]]
    assert len(kept) == 50 and len(set(kept)) == 50
    assert kept == sorted(kept, key=lambda s: int(s[1:]))  # original order kept
    assert kept == [c["评论内容"] for c in sample_record({}, comments, node=7, seed=1)["评论"]]
    assert kept != [c["评论内容"] for c in sample_record({}, comments, node=7, seed=2)["评论"]]
    assert len(sample_record({}, comments[:30], node=7, seed=1)["评论"]) == 30


def test_prompt_cut_to_4000_tokens_keeps_graph_tokens_and_template(setup):
    enc = setup.maker.encoder
    rec = setup.maker.texts.record(0)
    rec["描述"] = "很长的描述 " * 6000 + GRAPH_PAD  # data containing a special-token string stays data
    out = enc.encode(json.dumps(rec, ensure_ascii=False))
    assert out.truncated and len(out.input_ids) == 4000
    assert out.input_ids[:len(enc.prefix_ids)] == enc.prefix_ids
    assert out.input_ids[-len(enc.suffix_ids):] == enc.suffix_ids
    g = setup.model.graph_ids
    assert [out.input_ids.count(t) for t in (g.start, g.pad, g.end)] == [1, 1, 1]
    resp = enc.encode(json.dumps(rec, ensure_ascii=False), level=5)
    assert resp.input_ids[:4000] == out.input_ids and all(x == -100 for x in resp.labels[:4000])
    assert setup.tokenizer.decode(resp.input_ids[4000:]).startswith(RESPONSE.format(y=5))


def test_graph_embedding_reaches_the_model(setup):
    batch = setup.maker.batch(np.array([0, 1, 2]), with_response=True)
    model = setup.model.eval()
    with torch.no_grad():
        y0 = model.predict(batch.input_ids, batch.attention_mask, batch.graph)
        y1 = model.predict(batch.input_ids, batch.attention_mask, batch.graph + 1.0)
        l0 = model.lm_loss(batch.input_ids, batch.attention_mask, batch.labels, batch.graph)
        l1 = model.lm_loss(batch.input_ids, batch.attention_mask, batch.labels, batch.graph * -2.0)
    assert not torch.allclose(y0, y1) and not torch.equal(l0, l1)
    assert ((y0 >= 0) & (y0 <= 9)).all()


def _grads(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}


def test_align_trains_only_projector_and_graph_tokens(setup):
    model = setup.model.train()
    names = set(model.set_trainable("align"))
    assert names == {"projector.weight", "projector.bias", "graph_tokens"}
    b = setup.maker.batch(np.array([0, 1]), with_response=True)
    model.lm_loss(b.input_ids, b.attention_mask, b.labels, b.graph).backward()
    assert _grads(model) == names
    assert model.lm.get_input_embeddings().weight.grad is None


def test_finetune_trains_head_projector_and_top_layers(setup):
    model = setup.model.train()
    names = set(model.set_trainable("finetune", top_layers=2))
    layers = decoder_layers(model.lm)
    top = {id(p) for layer in list(layers)[2:] for p in layer.parameters()}
    expected = {n for n, p in model.named_parameters() if id(p) in top} | {
        "projector.weight", "projector.bias", "head.weight", "head.bias"}
    assert names == expected
    assert model.head.weight.abs().sum() == 0  # zero-initialised: the first prediction is the stage-1 prior
    with torch.no_grad():
        model.head.weight.normal_()  # as after the first step, when gradients reach below the head
    b = setup.maker.batch(np.array([0, 1]), with_response=False)
    torch.nn.functional.smooth_l1_loss(model.predict(b.input_ids, b.attention_mask, b.graph), b.level).backward()
    assert _grads(model) == expected
    assert all(p.grad is None for layer in list(layers)[:2] for p in layer.parameters())
    assert model.graph_tokens.grad is None
    # With nothing trainable below them, autograd records nothing in the lower layers (no_grad in effect).
    model.projector.requires_grad_(False)
    seen = []
    hooks = [layer.register_forward_hook(lambda m, i, o: seen.append(
        (o[0] if isinstance(o, tuple) else o).requires_grad)) for layer in layers]
    model.predict(b.input_ids, b.attention_mask, b.graph)
    for h in hooks:
        h.remove()
    assert seen == [False, False, True, True]


def _states_equal(a: Path, b: Path) -> None:
    sa = torch.load(a, weights_only=False)["trainable"]
    sb = torch.load(b, weights_only=False)["trainable"]
    assert sa.keys() == sb.keys()
    for k in sa:
        torch.testing.assert_close(sa[k], sb[k], msg=k)


def test_stages_run_resume_after_kill_and_predict(store_path, llm_dir, stage1_run, tmp_path, capsys):
    from netgpt.commands import predict
    from netgpt.evaluate import write_eval_report
    from netgpt.llm.stages import run_align, run_finetune

    run_a, run_b = fresh_run(stage1_run, tmp_path / "run_a"), fresh_run(stage1_run, tmp_path / "run_b")
    full = run_align(run_a, store_path, llm_dir, max_steps=4, config=FAST)
    assert full["steps"] == 4 and np.isfinite(full["train_loss"])
    # run_b checkpoints every 2 steps and is killed after step 3 (logged, not checkpointed), then resumed
    # with its stored settings: it redoes step 3 and ends where the uninterrupted run_a ends.
    every2 = {**FAST, "checkpoint_every": 2}
    assert run_align(run_b, store_path, llm_dir, max_steps=4, config=every2, stop_after_steps=3)["stopped_at_step"] == 3
    assert not (run_b / "align" / "final.pt").exists()
    assert torch.load(run_b / "align" / "checkpoint_last.pt", weights_only=False)["step"] == 2
    with pytest.raises(UserError, match="--resume"):
        run_align(run_b, store_path, llm_dir, max_steps=4, config=FAST)
    run_align(run_b, store_path, llm_dir, max_steps=4, resume=True)
    _states_equal(run_a / "align" / "final.pt", run_b / "align" / "final.pt")
    steps = [json.loads(x)["step"] for x in (run_b / "align" / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]

    ft = run_finetune(run_a, store_path, llm_dir, max_steps=2, config=FAST)
    stopped = run_finetune(run_b, store_path, llm_dir, max_steps=2, config=FAST, stop_after_steps=1)
    assert stopped["stopped_at_step"] == 1
    run_finetune(run_b, store_path, llm_dir, max_steps=2, config=FAST, resume=True)
    _states_equal(run_a / "finetune" / "final.pt", run_b / "finetune" / "final.pt")
    metrics = json.loads((run_a / "finetune" / "metrics.json").read_text())
    assert set(metrics) == {"val", "test"} and {"acc", "mse", "mae"} <= set(metrics["test"])
    table = pq.read_table(run_a / "finetune" / "predictions_test.parquet")
    assert table.column_names == ["node", "sample_id", "y_true", "y_pred"] and table.num_rows == metrics["test"]["n"]
    assert metrics == {k: ft[k] for k in ("val", "test")}
    report = write_eval_report(run_a, "finetune", "test", store_path)
    assert report["overall"]["mae"] == pytest.approx(metrics["test"]["mae"])

    ids = GraphStore.open(store_path).sample_ids()[:2]
    parser = argparse.ArgumentParser()
    predict.register(parser.add_subparsers())
    args = parser.parse_args(["predict", "--run", str(run_a), "--store", str(store_path), "--ids", *ids])
    capsys.readouterr()
    assert args.func(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == ids and all(0 <= int(ln.split("\t")[1]) <= 9 for ln in lines)
    with pytest.raises(UserError, match="not in the store"):
        args.func(parser.parse_args(["predict", "--run", str(run_a), "--store", str(store_path), "--ids", "nope"]))


def test_finetune_needs_align_unless_skipped(store_path, llm_dir, stage1_run, tmp_path):
    from netgpt.llm.stages import run_finetune

    with pytest.raises(UserError, match="stage 2"):
        run_finetune(fresh_run(stage1_run, tmp_path / "run_a"), store_path, llm_dir, max_steps=1, config=FAST)
    out = run_finetune(fresh_run(stage1_run, tmp_path / "run_b"), store_path, llm_dir, max_steps=1,
                       config={**FAST, "skip_align": True})
    assert out["steps"] == 1


def _free_port() -> int:
    """A TCP port nobody listens on now (a pid-derived one collided with an earlier test's group)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture()
def single_process_group(monkeypatch):
    """DeepSpeed's one-process gloo group for one test, torn down (with its environment) afterwards."""
    import torch.distributed as dist

    for key, value in {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(_free_port()), "RANK": "0",
                       "LOCAL_RANK": "0", "WORLD_SIZE": "1"}.items():
        monkeypatch.setenv(key, value)
    yield
    if dist.is_initialized():
        dist.destroy_process_group()


def test_deepspeed_zero2_runs_and_resumes_on_cpu(store_path, llm_dir, stage1_run, tmp_path, single_process_group):
    from netgpt.llm.stages import run_align

    cfg = {**FAST, "engine": "deepspeed"}
    run, whole = fresh_run(stage1_run, tmp_path / "run_ds"), fresh_run(stage1_run, tmp_path / "ds_whole")
    assert run_align(run, store_path, llm_dir, max_steps=3, config=cfg, stop_after_steps=1)["stopped_at_step"] == 1
    assert [p.name for p in (run / "align" / "ds").iterdir() if p.is_dir()] == ["step1"]
    out = run_align(run, store_path, llm_dir, max_steps=3, config=cfg, resume=True)
    assert out["engine"] == "deepspeed" and out["steps"] == 3
    lines = [json.loads(x) for x in (run / "align" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3] and lines[-1]["lr"] > 0
    run_align(whole, store_path, llm_dir, max_steps=3, config=cfg)
    _states_equal(run / "align" / "final.pt", whole / "align" / "final.pt")


def _other_arch(kind: str, llm_dir: Path, out: Path) -> Path:
    """A random tiny model of another architecture sharing the tiny tokenizer."""
    from transformers import (AutoTokenizer, LlamaConfig, LlamaForCausalLM, Qwen2VLConfig,
                              Qwen2VLForConditionalGeneration)

    tok = AutoTokenizer.from_pretrained(llm_dir)
    text = dict(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                num_attention_heads=2, num_key_value_heads=1)
    torch.manual_seed(0)
    if kind == "llama":
        model = LlamaForCausalLM(LlamaConfig(**text))
    elif kind == "qwen2_5":  # Qwen2.5: the Qwen2 architecture with its own rope base, tied embeddings, qkv bias
        from transformers import Qwen2Config, Qwen2ForCausalLM

        model = Qwen2ForCausalLM(Qwen2Config(**text, rope_theta=1_000_000.0, tie_word_embeddings=True,
                                             use_sliding_window=False, max_position_embeddings=32768))
    else:
        model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(
            text_config={**text, "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]}},
            vision_config=dict(depth=1, embed_dim=32, hidden_size=32, num_heads=2)))
    tok.save_pretrained(out)
    model.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", ["llama", "qwen2_5", "qwen2_vl"])
def test_other_architectures_read_the_graph_token(kind, store_path, llm_dir, stage1_run, tmp_path):
    from netgpt.llm.stages import run_align, run_finetune
    from netgpt.llm.stages import setup as make_setup

    other = _other_arch(kind, llm_dir, tmp_path / kind)
    s = make_setup(store_path, other, stage1_run, LLMConfig(), device=torch.device("cpu"))
    names = s.model.set_trainable("finetune", top_layers=1)
    assert sum(n.startswith("lm.") for n in names) > 0 and not any("visual" in n for n in names)
    b = s.maker.batch(np.array([0, 1]), with_response=True)
    with torch.no_grad():
        s.model.head.weight.normal_()  # a trained head: the last hidden state must depend on the graph token
    y0 = s.model.predict(b.input_ids, b.attention_mask, b.graph)
    y0.sum().backward()
    assert s.model.projector.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(y0, s.model.predict(b.input_ids, b.attention_mask, b.graph + 1.0))
        assert torch.isfinite(s.model.lm_loss(b.input_ids, b.attention_mask, b.labels, b.graph))
    # one align and one finetune step through the stage code (Qwen2-VL: multimodal rotary positions, text only)
    run = fresh_run(stage1_run, tmp_path / f"run_{kind}")
    cfg = {**FAST, "top_layers": 1, "max_eval_samples": 2}
    assert run_align(run, store_path, other, max_steps=1, config=cfg)["steps"] == 1
    out = run_finetune(run, store_path, other, max_steps=1, config=cfg)
    assert out["steps"] == 1 and np.isfinite(out["test"]["mae"])


def test_bf16_training_keeps_fp32_master_weights(store_path, llm_dir, stage1_run):
    from netgpt.llm.engine import make_engine
    from netgpt.llm.stages import setup as make_setup

    cfg = LLMConfig(bf16=True, engine="torch", lr=1e-5, grad_accum=1, warmup_ratio=0.0)
    s = make_setup(store_path, llm_dir, stage1_run, cfg, device=torch.device("cpu"))
    assert s.model.lm.get_input_embeddings().weight.dtype == torch.bfloat16  # loaded in bf16
    s.model.set_trainable("finetune", top_layers=2)
    engine = make_engine(s.model, cfg, total_steps=10, device=torch.device("cpu"))
    trainable = {n: p for n, p in s.model.named_parameters() if p.requires_grad}
    assert all(p.dtype == torch.float32 for p in trainable.values())
    assert all(p.dtype == torch.bfloat16 for n, p in s.model.lm.named_parameters() if not p.requires_grad)
    layer = next(n for n in trainable if n.startswith("lm.") and n.endswith("mlp.up_proj.weight"))
    with torch.no_grad():
        s.model.head.weight.normal_()  # a zero head passes no gradient below it
    before = trainable[layer].detach().clone()
    b = s.maker.batch(np.array([0, 1, 2, 3]), with_response=False)
    for _ in range(3):
        with engine.autocast():
            pred = s.model.predict(b.input_ids, b.attention_mask, b.graph)
        engine.backward(torch.nn.functional.smooth_l1_loss(pred.float(), b.level))
        engine.step()
    changed = (trainable[layer].detach() != before).float().mean()
    # Adam moves every weight with a gradient by ~lr per step; in bf16 (spacing ~1e-4 near 0.02) most of
    # these 1e-5 updates would round away
    assert changed > 0.9


KILL_SCRIPT = """
import sys
from netgpt.llm.stages import run_align
run_align(sys.argv[1], sys.argv[2], sys.argv[3], max_steps=3, resume=sys.argv[5] == "resume", config=dict(
    grad_accum=2, lr=1e-3, checkpoint_every=1, warmup_ratio=0.0, engine=sys.argv[4]))
"""


@pytest.mark.parametrize("engine", ["torch", "deepspeed"])
def test_resume_after_sigkill_between_checkpoint_writes(engine, store_path, llm_dir, stage1_run, tmp_path):
    import os
    import subprocess
    import sys

    from netgpt.llm.stages import run_align

    killed, whole = fresh_run(stage1_run, tmp_path / "killed"), fresh_run(stage1_run, tmp_path / "whole")
    env = {**os.environ, "NETGPT_KILL_AT": "after_engine_save:2", "MASTER_PORT": str(_free_port())}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(killed), str(store_path), str(llm_dir), engine, "new"],
                          env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
    assert proc.returncode == -9, proc.stderr[-2000:]  # SIGKILL after the engine state of step 2, before its commit
    ck = torch.load(killed / "align" / "checkpoint_last.pt", weights_only=False)
    assert ck["step"] == 1
    env.pop("NETGPT_KILL_AT")
    for run, mode in ((killed, "resume"), (whole, "new")):
        proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(run), str(store_path), str(llm_dir), engine, mode],
                              env=env, cwd=Path(__file__).parents[1], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
    _states_equal(killed / "align" / "final.pt", whole / "align" / "final.pt")
    assert run_align(killed, store_path, llm_dir, resume=True)["resumed_finished"]


def _train_cli(argv: list[str]) -> int:
    from netgpt.commands import train

    parser = argparse.ArgumentParser()
    train.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *argv])
    return args.func(args)


def test_cli_resume_keeps_the_stored_config(store_path, llm_dir, stage1_run, tmp_path):
    from netgpt.llm.stages import run_align

    custom = {**FAST, "lr": 5e-4, "grad_accum": 3, "seed": 4}
    (tmp_path / "custom.json").write_text(json.dumps(custom))
    part, whole = fresh_run(stage1_run, tmp_path / "part"), fresh_run(stage1_run, tmp_path / "whole")
    assert run_align(part, store_path, llm_dir, max_steps=3, config=custom, stop_after_steps=1)["stopped_at_step"] == 1
    assert _train_cli(["--stage", "align", "--resume", "--store", str(store_path), "--llm", str(llm_dir),
                       "--out", str(part), "--no-progress"]) == 0
    stored = json.loads((part / "align" / "config.json").read_text())["llm"]
    assert stored["lr"] == 5e-4 and stored["grad_accum"] == 3 and stored["seed"] == 4 and stored["max_steps"] == 3
    run_align(whole, store_path, llm_dir, max_steps=3, config=custom)
    _states_equal(part / "align" / "final.pt", whole / "align" / "final.pt")


def test_bad_llm_config_fails_before_stage_1(store_path, llm_dir, tmp_path):
    with pytest.raises(UserError, match="no such LLM config"):
        _train_cli(["--stage", "all", "--store", str(store_path), "--llm", str(llm_dir), "--llm-config", "nosuch",
                    "--out", str(tmp_path / "r"), "--no-progress"])
    with pytest.raises(UserError, match="not a Hugging Face model directory"):
        _train_cli(["--store", str(store_path), "--llm", str(tmp_path), "--out", str(tmp_path / "r2"), "--no-progress"])
    assert not (tmp_path / "r").exists() and not (tmp_path / "r2").exists()


def test_llm_without_stage_runs_all_three_stages(store_path, llm_dir, tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({**FAST, "max_eval_samples": 4}))
    run = tmp_path / "run"
    before = file_digests(store_path)
    assert _train_cli(["--store", str(store_path), "--llm", str(llm_dir), "--llm-config", str(tmp_path / "c.json"),
                       "--out", str(run), "--d-g", "8", "--fanouts", "2", "2", "--batch-size", "16", "--epochs", "1",
                       "--max-steps", "1", "--max-eval-batches", "1", "--llm-max-steps", "1", "--no-progress"]) == 0
    for stage in ("pretrain", "align", "finetune"):
        assert (run / stage / "metrics.jsonl").is_file(), stage
    assert (run / "embeddings" / "video.npy").is_file() and (run / "finetune" / "final.pt").is_file()
    assert file_digests(store_path) == before  # the dataset is read-only to training


def test_response_only_loss_matches_the_full_lm_loss(setup):
    b = setup.maker.batch(np.array([3, 4, 5]), with_response=True)
    model = setup.model.eval()
    with torch.no_grad():
        ours = model.lm_loss(b.input_ids, b.attention_mask, b.labels, b.graph)
        full = model.lm(inputs_embeds=model.inputs_embeds(b.input_ids, b.graph), attention_mask=b.attention_mask,
                        labels=b.labels).loss
    torch.testing.assert_close(ours, full)


def test_config_presets_and_user_errors(tmp_path):
    from netgpt.llm.config import as_config

    assert as_config(None) == LLMConfig() and LLMConfig().grad_accum == 32 and LLMConfig().micro_batch == 2
    tiny = as_config("tiny", max_steps=3, seed=None)
    assert tiny.lr == 1e-3 and tiny.max_steps == 3 and tiny.seed == 0
    (tmp_path / "c.json").write_text(json.dumps({"top_layers": 2}))
    assert as_config(str(tmp_path / "c.json")).top_layers == 2
    with pytest.raises(UserError, match="unknown LLM config keys"):
        as_config({"lr": 1e-4, "nope": 1})
    with pytest.raises(UserError, match="no such LLM config"):
        as_config("missing.json")
    with pytest.raises(UserError, match="engine"):
        LLMConfig(engine="jax")


def test_torch_schedule_matches_deepspeed_warmup_cosine():
    import deepspeed.runtime.lr_schedules as ds  # deepspeed is a hard dependency
    from netgpt.llm.engine import TorchEngine

    cfg = LLMConfig(lr=1e-3, warmup_ratio=0.2)
    ours = TorchEngine(torch.nn.Linear(2, 1), cfg, total_steps=20)
    opt = torch.optim.AdamW(torch.nn.Linear(2, 1).parameters(), lr=1e-3)
    theirs = ds.WarmupCosineLR(opt, total_num_steps=20, warmup_num_steps=4, warmup_min_ratio=0.0,
                               cos_min_ratio=0.0, warmup_type="linear")
    a, b = [], []
    for _ in range(22):
        a.append(ours.lr()); b.append(opt.param_groups[0]["lr"])
        ours.optimizer.step(); opt.step()  # no gradients: only keeps the step order torch expects
        ours.scheduler.step(); theirs.step()
    np.testing.assert_allclose(a, b, atol=1e-12)
    assert a[0] == 0.0 and 0.9e-3 < max(a) <= 1e-3 and a[-1] < 1e-5


def test_growing_the_embeddings_for_graph_tokens_prints_no_warning(llm_dir, capfd):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from netgpt.llm.tokens import add_graph_tokens

    tok = AutoTokenizer.from_pretrained(llm_dir)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok) - 3, hidden_size=16, intermediate_size=32,
                                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1))
    capfd.readouterr()
    add_graph_tokens(tok, model)
    assert model.get_input_embeddings().weight.shape[0] == len(tok)  # it did resize
    assert "new embeddings will be initialized" not in capfd.readouterr().err
