"""Writes openapi.json from the API's routes: `make openapi`."""

from __future__ import annotations

import os
from pathlib import Path

# The document does not depend on configuration; placeholders let the settings load.
os.environ.setdefault("PUBLIC_BASE_URL", "https://connect.example.com")
os.environ.setdefault("LINK_SIGNING_KEY", "placeholder-key-for-openapi-generation-only")

from qbo_health.api.app import openapi_json

TARGET = Path(__file__).resolve().parent.parent / "openapi.json"

if __name__ == "__main__":
    TARGET.write_text(openapi_json(), encoding="utf-8")
    print(f"wrote {TARGET}")
