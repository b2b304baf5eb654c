"""``python -m qbo_health.ops``: see :mod:`qbo_health.ops.cli`."""

from qbo_health.ops.cli import run

raise SystemExit(run())
