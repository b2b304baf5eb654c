"""The ops CLI: ``python -m qbo_health.ops <command>`` against AWS or the embedded stack (see docs/ops.md)."""
