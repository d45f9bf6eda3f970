"""Graph models of NetGPT stage 1 and its graph baselines."""
