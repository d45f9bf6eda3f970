"""The NetGPT prompt: a sample's JSON inside the model's chat template, cut to a token budget."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graphstore.errors import UserError
from netgpt.llm.tokens import GRAPH_END, GRAPH_PAD, GRAPH_START, GraphTokenIds

SYSTEM = "You are a helpful assistant."
INSTRUCTION = (
    "Please read the following json format information about the short-video and predict the final "
    "propagation influence level (levels 0~9) of the short-video: "
)
USER_PREFIX = f"Graph 1: {GRAPH_START}{GRAPH_PAD}{GRAPH_END}{INSTRUCTION}"
RESPONSE = "The influence level of this short-video is {y}"
_MARK = "\u2063NETGPT_SAMPLE_JSON\u2063"

# samples.parquet column -> key in the prompt JSON (the released XS-Video keys, or English).
# The label (level), final_state, history and url are never shown.
PROMPT_FIELDS = (
    ("description", "描述", "description"),
    ("title", "标题", "title"),
    ("author_id", "发布用户ID", "post_user_id"),
    ("duration_s", "视频时长（秒）", "duration_s"),
    ("platform", "平台", "platform"),
    ("post_time", "发布时间", "post_time"),
    ("topic", "话题", "topic"),
    ("current_time", "当前时间", "current_time"),
    ("fans", "当前粉丝量", "fans"),
    ("likes", "当前点赞量", "likes"),
    ("views", "当前播放量", "views"),
    ("shares", "当前分享量", "shares"),
    ("collects", "当前收藏量", "collects"),
    ("comment_count", "当前评论量", "comment_count"),
)
COMMENTS_KEY = {"xsvideo": "评论", "english": "comments"}
COMMENT_KEYS = {"xsvideo": ("评论内容", "评论时间"), "english": ("text", "time")}
SAMPLE_COLUMNS = tuple(f[0] for f in PROMPT_FIELDS)


def pick_comments(n: int, max_comments: int, seed: int, node: int) -> np.ndarray:
    """Indices (ascending) of the comments kept: all, or `max_comments` drawn with seed (seed, node)."""
    if n <= max_comments:
        return np.arange(n)
    rng = np.random.default_rng([seed, node])
    return np.sort(rng.choice(n, size=max_comments, replace=False))


def sample_record(row: dict[str, Any], comments: list[dict[str, Any]], *, node: int, max_comments: int = 50,
                  seed: int = 0, keys: str = "xsvideo") -> dict[str, Any]:
    """The JSON object shown to the LLM for one sample (no label, at most `max_comments` comments)."""
    if keys not in COMMENTS_KEY:
        raise UserError(f"prompt keys must be one of {', '.join(COMMENTS_KEY)}, got {keys!r}")
    col = 1 if keys == "xsvideo" else 2
    rec = {f[col]: row.get(f[0]) for f in PROMPT_FIELDS}
    text_key, time_key = COMMENT_KEYS[keys]
    keep = pick_comments(len(comments), max_comments, seed, node)
    rec[COMMENTS_KEY[keys]] = [{text_key: comments[i]["text"], time_key: comments[i]["time"]} for i in keep]
    return rec


def sample_json(record: dict[str, Any]) -> str:
    """Compact JSON text of a sample record (non-ASCII kept)."""
    return json.dumps(record, ensure_ascii=False)


def render_chat(tokenizer, user: str, response: str | None = None) -> str:
    """The chat template rendered for system + user (+ assistant response, else the generation prompt)."""
    def messages(with_system: bool) -> list[dict[str, str]]:
        msgs = [{"role": "system", "content": SYSTEM}] if with_system else []
        msgs.append({"role": "user", "content": user if with_system else f"{SYSTEM}\n\n{user}"})
        if response is not None:
            msgs.append({"role": "assistant", "content": response})
        return msgs

    kwargs = dict(tokenize=False, add_generation_prompt=response is None)
    if tokenizer.chat_template is None:
        raise UserError(f"tokenizer {getattr(tokenizer, 'name_or_path', '')!r} has no chat template")
    from jinja2.exceptions import TemplateError

    try:
        return tokenizer.apply_chat_template(messages(True), **kwargs)
    except TemplateError:  # templates that refuse a system role (e.g. some Mistral ones): prepend it to the user turn
        return tokenizer.apply_chat_template(messages(False), **kwargs)


@dataclass
class Encoded:
    """Token ids of one example; labels are -100 outside the response."""

    input_ids: list[int]
    labels: list[int]
    truncated: bool


@dataclass
class PromptEncoder:
    """Encodes sample JSON texts into prompt token ids with the graph tokens and template kept whole."""

    tokenizer: Any
    graph_ids: GraphTokenIds
    max_prompt_tokens: int = 4000
    prefix_ids: list[int] = field(init=False)
    suffix_ids: list[int] = field(init=False)
    _responses: dict[int, list[int]] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        text = render_chat(self.tokenizer, USER_PREFIX + _MARK)
        if text.count(_MARK) != 1:
            raise UserError("the chat template does not keep the user message verbatim")
        prefix, suffix = text.split(_MARK)
        self._prompt_text = text
        self.prefix_ids = self._ids(prefix, split_special=False)
        self.suffix_ids = self._ids(suffix, split_special=False)
        g = self.graph_ids
        for tok in (g.start, g.pad, g.end):
            if self.prefix_ids.count(tok) != 1:
                raise UserError("the tokenizer does not keep the graph tokens as single tokens")
        if self.budget < 1:
            raise UserError(f"--max-prompt-tokens {self.max_prompt_tokens} leaves no room for the sample JSON "
                            f"(the template takes {len(self.prefix_ids) + len(self.suffix_ids)} tokens)")

    @property
    def budget(self) -> int:
        """Tokens left for the sample JSON."""
        return self.max_prompt_tokens - len(self.prefix_ids) - len(self.suffix_ids)

    def _ids(self, text: str, *, split_special: bool) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False, split_special_tokens=split_special)["input_ids"])

    def response_ids(self, level: int) -> list[int]:
        """Tokens of the stage-2 answer, with whatever the template closes an assistant turn with."""
        if level not in self._responses:
            answer = RESPONSE.format(y=int(level))
            full = render_chat(self.tokenizer, USER_PREFIX + _MARK, answer)
            prompt = self._prompt_text
            tail = full[len(prompt):] if full.startswith(prompt) else answer + (self.tokenizer.eos_token or "")
            self._responses[level] = self._ids(tail, split_special=False)
        return self._responses[level]

    def encode(self, json_text: str, level: int | None = None) -> Encoded:
        """Prompt ids (JSON tokens cut to the budget); with `level`, the stage-2 response appended."""
        # Sample text is data: special-token strings inside it are split into ordinary tokens.
        body = self._ids(json_text, split_special=True)
        truncated = len(body) > self.budget
        body = body[: self.budget]
        ids = self.prefix_ids + body + self.suffix_ids
        labels = [-100] * len(ids)
        if level is not None:
            resp = self.response_ids(level)
            ids = ids + resp
            labels = labels + resp
        return Encoded(ids, labels, truncated)
