"""NetGPT stages 2 (align) and 3 (finetune): a stock causal LM reads one graph token per sample.

Modules: prompt (the paper's prompt in the model's chat template), tokens (graph tokens), model
(GraphLLM: projector at <|graph_pad|> through inputs_embeds, regression head), data (samples,
embeddings, batches), engine (DeepSpeed ZeRO-2 or a plain torch loop), stages (run_align,
run_finetune), config (LLMConfig). A real run points `--llm` at a local Qwen2-VL-7B-Instruct (or any
Hugging Face causal LM) directory; tests use `tools/make_tiny_llm.py`."""
