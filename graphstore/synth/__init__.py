"""Synthetic XS-Video in the released file's format, calibrated to the published statistics.

The generative story (per video): a platform, a post time, a topic (long-tailed popularity, with a
latent heat), a poster (long-tailed activity, with a latent reach), a latent appeal and a hidden
late-growth surprise. Interactions grow as 1 - exp(-age / tau) with a per-video tau (flat by about
day 10); the level is computed from the interactions at 14 days, aligned to the reference platform,
with the published thresholds. Early counts are noisy: a sample's observed counts carry a shared
log-normal error whose spread shrinks with the observation age (about 0.8 at a few hours, 0.07
after ten days), as early interaction counts on real platforms are dominated by how the feed
happened to push the video in its first hours.

What the graph adds: the level's log-scale driver is appeal + topic heat + author reach + hidden.
A sample's own counts see their sum through the age-dependent noise; the author's other samples
(same-author edges) and the topic's other samples (same-topic edges) see reach and heat through
many independent noise draws, and earlier states of the same video (history edges) see appeal. Growth speed (tau) is
mostly the author's, so the author's older videos also show how far a young one will grow.
`hidden` (std 0.35) is visible to nobody. `write_latents` stores the latents per sample so that a
benchmark can fit an upper bound on what the graph holds (own features + true heat and reach). Crawl states are at least 2 days apart; the state at 14+ days after
posting is the final state. Count targets (samples, videos, comments, history, same-author and
same-topic edges) are met by bisection on the realised graph, so they hold at every seed.

Growth with scale. `scale` multiplies videos (and so samples, comments, history edges) over the same
39-day window. Up to scale 1 the generator is calibrated on the published counts: 535 topics, and
same-topic edges growing as scale^2 (a sample's in-neighbours are its topic's earlier samples, and
every topic grows with the data). Beyond scale 1 that rule would give 166 billion same-topic edges
at scale 10 from 535 topics of ~7,100 samples each, which describes no real crawl: a larger crawl
(more platforms, regions, a wider net of hashtags) brings more topics, not ten times larger ones.
So above scale 1 (`topics_at`, `topic_ranks`, `same_topic_target`):

- topics grow linearly, round(535 * scale), so the mean topic size stays at the published ~714 samples;
- the topic popularity is the published one, copied: each published popularity rank is shared by
  scale topics, so the distribution of topic sizes (and each sample's same-topic in-degree, ~4,300
  on average) stays as published, and same-topic edges grow linearly: published * scale^2 * 535 /
  topics, 16.6 billion at scale 10;
- authors grow linearly at every scale (0.36 per video, so the mean author activity is the
  published one), and same-author edges linearly: 53.7 million at scale 10.

At scale <= 1 nothing changes (the files are byte for byte those of the earlier generator).
"""
from graphstore.synth.counts import FULL, SynthSummary, bucket_edges, expected_counts, same_topic_target, topic_ranks, topics_at
from graphstore.synth.generator import summary_dict, synthesize
from graphstore.synth.levels import (
    GRAPH_VISIBLE_LATENTS, INDICATORS, OWN_LATENTS, latents_path, level_of, observation_noise, write_latents,
)
from graphstore.synth.text import qwen_like_tokens

__all__ = ["FULL", "GRAPH_VISIBLE_LATENTS", "INDICATORS", "OWN_LATENTS", "SynthSummary", "bucket_edges",
           "expected_counts", "latents_path", "level_of", "observation_noise", "qwen_like_tokens", "same_topic_target",
           "summary_dict", "synthesize", "topic_ranks", "topics_at", "write_latents"]
