"""Paths of the small hand-made fixtures under tests/fixtures."""

from pathlib import Path

FORMAT_FIXTURES = Path(__file__).parent / "fixtures" / "formats"
