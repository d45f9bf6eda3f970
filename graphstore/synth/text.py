"""Synthetic titles, descriptions and comments with real-length statistics, and a Qwen-like token estimate."""
from __future__ import annotations

import math
import re

import numpy as np


# --- text --------------------------------------------------------------------------------------
_CHARS = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面"
          "而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把"
          "性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质"
          "气第向道命此变条只没结解问意建月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活"
          "设及管特件长求老头基资边流路级少图山统接知较将组见计别她手角期根论运农指几九区强放决西被干做必战先回则")
_HOOKS = ("必看", "震撼", "爆笑", "教程", "揭秘", "第一次", "挑战", "干货", "现场", "独家")


# Text lengths in words of 2-3 characters: lognormal (median, sigma), clipped to [min, max]. Calibrated
# so that the full-scale file is about 702 MB, as the released one, while a sample's JSON stays mostly
# at 200-500 Qwen2-VL-like tokens (`qwen_like_tokens`) with a few in the thousands: most captions and
# comments are short, a long tail of long descriptions and much-commented samples carries the bytes.
TITLE_WORDS = (6.0, 0.45, 2, 30)
DESCRIPTION_WORDS = (20.0, 1.4, 3, 2500)
COMMENT_WORDS = (16.0, 1.2, 1, 400)
COMMENT_CONCENTRATION = 1.5  # comments listed per sample grow as (1 + comment count) ** this
_PUNCTUATION = ("，", "。", "！", "？", "、")
_TOKEN_RUNS = re.compile(r"(\d)|([\u3000-\u9fff\uf900-\ufaff\uff00-\uffef]+)|([A-Za-z]+)|(\s+)|([^\w\s]+)|(.)", re.S)
CJK_CHARS_PER_TOKEN = 1.5


def qwen_like_tokens(text: str) -> int:
    """Approximate Qwen2(-VL) token count: one per digit (its pre-tokenizer splits digits), 1.5 CJK
    characters a token, 4 Latin letters a token, 2 punctuation marks a token, whitespace free."""
    n = 0
    for digit, cjk, latin, _space, punct, other in _TOKEN_RUNS.findall(text):
        if digit or other:
            n += 1
        elif cjk:
            n += math.ceil(len(cjk) / CJK_CHARS_PER_TOKEN)
        elif latin:
            n += math.ceil(len(latin) / 4)
        elif punct:
            n += math.ceil(len(punct) / 2)
    return n


def vocabulary(rng: np.random.Generator, size: int) -> list[str]:
    chars = np.array(list(_CHARS))
    words = {"".join(rng.choice(chars, size=int(rng.integers(2, 4)))) for _ in range(size * 2)}
    return sorted(words)[:size]


def prose_vocabulary(vocab: list[str]) -> list[str]:
    """The words plus about one in five followed by a punctuation mark, for running text."""
    return vocab + [w + _PUNCTUATION[i % len(_PUNCTUATION)] for i, w in enumerate(vocab[: len(vocab) // 4])]


def text_length(rng: np.random.Generator, spec: tuple[float, float, int, int]) -> int:
    median, sigma, lo, hi = spec
    return int(min(hi, max(lo, round(rng.lognormal(math.log(median), sigma)))))


def join_words(rng: np.random.Generator, vocab: list[str], n: int) -> str:
    return "".join(vocab[i] for i in rng.integers(0, len(vocab), n))


def video_text(rng: np.random.Generator, vocab: list[str], prose: list[str], topic_words: list[int],
                topic_name: str, appeal: float) -> tuple[str, str]:
    """(title, description) of one video: a hook word more likely for appealing videos, topic words, hashtags."""
    hook = _HOOKS[int(rng.integers(len(_HOOKS)))] if appeal + rng.normal(0, 0.8) > 1.0 else ""
    tw = [vocab[i] for i in rng.choice(topic_words, 2, replace=False)]
    title = hook + tw[0] + join_words(rng, vocab, text_length(rng, TITLE_WORDS)) + tw[1]
    tags = "".join(f"#{join_words(rng, vocab, 2)}#" for _ in range(int(rng.integers(0, 4))))
    return title, join_words(rng, prose, text_length(rng, DESCRIPTION_WORDS)) + f"#{topic_name}#" + tags
