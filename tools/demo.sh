#!/usr/bin/env bash
# The main job end to end on the synthetic default: synthesise XS-Video at scale 0.01, build the
# store with features, build a tiny local LLM, train NetGPT's three stages, evaluate on test.
# Usage: bash tools/demo.sh [WORKDIR]   (SCALE, SEED and LLM_STEPS may be set in the environment;
# LLM_STEPS caps the optimiser steps of stages 2 and 3, default: one epoch of the train split each)
set -euo pipefail
WORK="${1:-runs/demo}"
SCALE="${SCALE:-0.01}"
LLM_STEPS="${LLM_STEPS:-}"
SEED="${SEED:-0}"
mkdir -p "$WORK"

echo "== 1/6 synthesise XS-Video (scale $SCALE)"
graphstore synth --scale "$SCALE" --seed "$SEED" --out "$WORK/xsvideo.json" --overwrite
echo "== 2/6 build the store (topology, splits, features)"
graphstore build --input "$WORK/xsvideo.json" --out "$WORK/store" --overwrite
graphstore info "$WORK/store"
echo "== 3/6 sampler benchmark (a few batches)"
graphstore sample --store "$WORK/store" --batch-size 128 --fanouts 10,10 --batches 5 --threads 2
echo "== 4/6 build a tiny Qwen2-architecture LLM with a tokenizer trained on the store's text"
python3 tools/make_tiny_llm.py --store "$WORK/store" --out "$WORK/tiny-llm"
echo "== 5/6 NetGPT stages 1-3 (pretrain, align, finetune)"
rm -rf "$WORK/run"  # every demo trains afresh (the stages refuse to overwrite a run without --resume)
netgpt train --store "$WORK/store" --llm "$WORK/tiny-llm" --llm-config tiny --out "$WORK/run" --seed "$SEED" \
  ${LLM_STEPS:+--llm-max-steps "$LLM_STEPS"}
echo "== 6/6 evaluate on the test split"
netgpt eval --run "$WORK/run" --split test --stage pretrain
netgpt eval --run "$WORK/run" --split test --stage finetune
echo "done: results in $WORK/run"
