"""Test-session settings that must be in place before any test module imports Numba."""
import os

# Numba sizes its thread pool from the CPUs this process may use, read once at import: on a one-core
# runner that is one thread, and no threaded kernel would ever run. Two threads on one core still
# take the threaded code paths the thread-count tests compare.
os.environ.setdefault("NUMBA_NUM_THREADS", "2")
