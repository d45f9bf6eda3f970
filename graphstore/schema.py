"""Node types, relations and input field names of the XS-Video graph."""
from __future__ import annotations

# 2: stores may have generations (`graphstore append`) and tables split into parts; 1 is read unchanged.
FORMAT_VERSION = 2
READABLE_FORMAT_VERSIONS = (1, 2)

DAY = 86_400  # seconds: timestamps are Unix seconds, and day numbers are timestamp // DAY

PLATFORMS = ("抖音", "快手", "西瓜", "头条", "哔哩哔哩")
PLATFORM_NAMES_EN = ("Douyin", "Kuaishou", "Xigua", "Toutiao", "Bilibili")

COUNT_FIELDS = ("fans", "likes", "views", "shares", "collects", "comment_count")

# Per-sample attribute node type -> relation; one node per video, aligned by row.
ATTRIBUTE_RELATIONS = {
    "title": "is_title_of",
    "description": "is_description_of",
    "time": "is_post_time_of",
    "ctime": "is_current_time_of",
    "video_time": "is_duration_time_of",
    "likes": "is_likes_of",
    "collects": "is_collects_of",
    "views": "is_views_of",
    "shares": "is_shares_of",
    "comments": "is_comments_of",
    "fans": "is_fans_of",
}

# (relation, head type, kind) in the paper's order.
RELATIONS = (
    ("is_platform_of", "platform", "aligned"),
    ("is_topic_of", "topic", "aligned"),
    ("is_title_of", "title", "aligned"),
    ("is_description_of", "description", "aligned"),
    ("is_post_time_of", "time", "aligned"),
    ("is_current_time_of", "ctime", "aligned"),
    ("is_duration_time_of", "video_time", "aligned"),
    ("is_comment_of", "comment", "range"),
    ("is_likes_of", "likes", "aligned"),
    ("is_collects_of", "collects", "aligned"),
    ("is_views_of", "views", "aligned"),
    ("is_shares_of", "shares", "aligned"),
    ("is_comments_of", "comments", "aligned"),
    ("is_fans_of", "fans", "aligned"),
    ("has_same_author_as", "video", "bucket"),
    ("has_same_topic_as", "video", "bucket"),
    ("is_history_of", "video", "csc"),
)
RELATION_NAMES = tuple(r[0] for r in RELATIONS)
NODE_TYPES = ("video", *ATTRIBUTE_RELATIONS, "comment", "topic", "platform")

# Relation groups used by the paper's ablations.
VIDEO_VIDEO_RELATIONS = ("has_same_author_as", "has_same_topic_as", "is_history_of")
INTERACTION_RELATIONS = (
    "is_likes_of", "is_collects_of", "is_views_of", "is_shares_of", "is_comments_of", "is_fans_of",
)
COMMENT_RELATIONS = ("is_comment_of",)

# Keys of the released XS-Video JSON (format 1) -> English names (format 2, JSON Lines).
XSVIDEO_KEYS = {
    "url": "url",
    "影响力等级": "level",
    "平台": "platform",
    "最终状态": "final_state",
    "发布时间": "post_time",
    "描述": "description",
    "标题": "title",
    "视频时长（秒）": "duration_s",
    "评论": "comments",
    "当前时间": "current_time",
    "当前粉丝量": "fans",
    "当前点赞量": "likes",
    "当前播放量": "views",
    "当前分享量": "shares",
    "当前收藏量": "collects",
    "当前评论量": "comment_count",
    "话题": "topic",
    "历史状态": "history",
    "发布用户ID": "author_id",
}
XSVIDEO_COMMENT_KEYS = {"评论内容": "text", "评论时间": "time"}

# Input limits of `graphstore build` and `append` (both formats; README "Input formats"). Each is far above
# the released file (381,926 samples in 702 MB: ~1.8 KB a sample with its comments).
MAX_JSON_DEPTH = 16  # containers nested in one record; the deepest legitimate is 3 (record > comments > comment)
MAX_TEXT_CHARS = 1_000_000  # one string: a title, description or comment text (and any string or key at all)
MAX_NAME_CHARS = 10_000  # one topic, author id, url, comment id or history entry
MAX_COUNT = 2**53  # counts and the duration: stored int64 / float64, encoded as float log(v + 1); exact below 2^53
MAX_ID = 2**63 - 1  # sample ids are canonical decimal strings of 0..MAX_ID (an int64)
MIN_DATE, MAX_DATE = "2000-01-01", "2100-01-01"  # post, current and comment times t: MIN_DATE <= t < MAX_DATE (UTC)

# Level thresholds of the paper: a sample is level k if any indicator exceeds its level-k
# threshold (views, then likes/shares/collects/comments); level 0 if all are 0.
VIEW_THRESHOLDS = (0, 100, 100_000, 1_000_000, 1_000_000, 1_000_000, 1_000_000, 10_000_000, 200_000_000)
INTERACTION_THRESHOLDS = (0, 10, 20, 80, 300, 1_000, 3_000, 10_000, 50_000)

DEFAULT_CUTOFF = "2024-12-20"
DEFAULT_VAL_DAYS = 7
# DuckDB's budget in `graphstore build` (it spills beyond it). Only the keys sit in DuckDB tables and the
# text passes through the final sorted COPY alone, so 2 GB plus the build's own arrays (at most ~100
# bytes a sample) keeps a scale-10 build (3.8 M samples, a 7 GB input) under 4 GB.
DEFAULT_MEMORY_LIMIT = "2GB"


def level_from_indicators(views: float, likes: float, shares: float, collects: float, comments: float) -> int:
    """Influence level of the paper's threshold table for platform-aligned indicators."""
    level = 0
    inter = max(likes, shares, collects, comments)
    for k in range(9):
        if views > VIEW_THRESHOLDS[k] or inter > INTERACTION_THRESHOLDS[k]:
            level = k + 1
    return level
