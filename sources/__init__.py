"""Event-log sources: where raw logs come from and how they reach the landing zone.

Plain Python with no Dagster imports. ``synthetic`` is the built-in generator;
``landing`` reads a landing day back with line-level error capture; ``bronze_schema``
is the validation contract every source maps onto.
"""
