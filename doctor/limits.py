"""Input limits, one place. Every file the doctor reads is checked against these BEFORE the work
that could blow up on it (parsing, alias expansion, decompression), and a refusal is one line with
the exit code of the input's kind (8 for a config, 9 for facts or a bundle). README's "Input
limits" table lists the same numbers: change both together.

The bounds are far above any real training config or facts file (the bundled examples are a few
KB) and low enough that the slowest path through the doctor stays within seconds on one core.
"""
from __future__ import annotations

from typing import Any

MAX_CONFIG_BYTES = 1024 * 1024          # a train.py / YAML / JSON config (real ones: < 50 KB)
MAX_LINE_CHARS = 100_000                # longest line of a config (minified JSON on one line fits)
MAX_NESTING = 100                       # brackets / mappings nested in a YAML or JSON value
MAX_AST_NODES = 200_000                 # Python syntax nodes in a training script
MAX_CALL_ARGS = 1_000                   # arguments (positional + keyword) of one call
MAX_INT_BITS = 256                      # integers the script evaluator computes (2**256 ~ 78 digits)
MAX_YAML_NODES = 100_000                # YAML nodes after alias expansion (billion laughs)
MAX_YAML_ALIASES = 1_000                # alias references (*name) in one YAML file
MAX_FACTS_BYTES = 16 * 1024 * 1024      # a --facts JSON (real ones: ~20 KB)
MAX_BUNDLE_BYTES = 64 * 1024 * 1024     # a bundle archive as stored on disk
MAX_MEMBER_BYTES = 64 * 1024 * 1024     # one member of a bundle, uncompressed
MAX_BUNDLE_TOTAL_BYTES = 128 * 1024 * 1024   # all members of a bundle together, uncompressed
MAX_BUNDLE_MEMBERS = 2_000              # entries in a bundle
MAX_COMPRESSION_RATIO = 200             # uncompressed / compressed, per member (zip bombs: 1000+)


def nesting_depth(value: Any, limit: int = MAX_NESTING) -> int:
    """Depth of nested lists/dicts in a loaded JSON/YAML value, iteratively (no recursion), stopping
    as soon as it passes `limit`. A cycle (YAML aliases can build one) counts as too deep."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if not isinstance(item, (list, dict)):
            continue
        if depth > limit:
            return depth
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (list, dict)))
    return deepest


def longest_line(text: str) -> tuple[int, int]:
    """(line number, length) of the longest line, in one linear pass."""
    best_no, best_len, start, lineno = 1, 0, 0, 1
    while True:
        end = text.find("\n", start)
        stop = len(text) if end < 0 else end
        if stop - start > best_len:
            best_no, best_len = lineno, stop - start
        if end < 0:
            return best_no, best_len
        start, lineno = end + 1, lineno + 1
