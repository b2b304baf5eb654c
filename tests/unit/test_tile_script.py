"""The QBO tile's script: within its size budget, and free of the APIs that would parse data as HTML."""

from __future__ import annotations

import gzip
import re

from qbo_health.api.tile import SCRIPT_FILE

BUDGET_BYTES = 15 * 1024  # minified and gzipped; the file ships unminified, so this is an upper bound


def test_the_shipped_script_gzipped_is_within_15_kb():
    shipped = SCRIPT_FILE.read_bytes()
    size = len(gzip.compress(shipped, compresslevel=9))
    print(f"\nqbo-connection-tile.js: {len(shipped)} bytes, {size} gzipped (budget {BUDGET_BYTES})")
    assert size <= BUDGET_BYTES


def test_the_script_never_parses_text_as_html():
    source = SCRIPT_FILE.read_text(encoding="utf-8")
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"):
        assert sink not in source, sink
    # Messages are posted by the result pages, never by the tile (and never to "*").
    assert not re.search(r"postMessage\(", source)
