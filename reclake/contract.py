"""Values the data contract fixes (``docs/data-contracts.md``), for Python code to share.

dbt states the same rules in its YAML tests; every Python module imports them from here.
"""

DEVICES: tuple[str, ...] = ("mobile", "desktop", "tablet")
"""Allowed values of ``device``."""

SLOT_POSITIONS: tuple[int, ...] = tuple(range(1, 11))
"""Allowed values of ``slot_position``."""

HOURS_OF_DAY: tuple[int, ...] = tuple(range(24))
"""Values of ``hour_of_day``."""
