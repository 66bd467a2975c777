"""Write generated logs into the landing zone, shaped as a log shipper writes them."""

from __future__ import annotations

import posixpath

from reclake.lake import Lake
from sources.synthetic import SOURCE_NAME, SyntheticDay, to_jsonl_gz

# Rows per landing file; shippers roll files by size, so a day spans several files.
ROWS_PER_FILE = 100_000


def land_synthetic_day(lake: Lake, generated: SyntheticDay) -> list[str]:
    """Replace a day's synthetic landing files and its truth file.

    Returns:
        The landing file URLs written (``events-00000.jsonl.gz``, ...).
    """
    # Truth first: a day is visible to sensors once its landing files appear.
    lake.write_arrow(generated.truth_table, lake.truth_file(SOURCE_NAME, generated.day))
    folder = lake.landing_dir(SOURCE_NAME, generated.day)
    lake.remove(folder)
    written = []
    events = generated.event_table
    for number, start in enumerate(range(0, max(events.num_rows, 1), ROWS_PER_FILE)):
        url = posixpath.join(folder, f"events-{number:05d}.jsonl.gz")
        # One file's rows at a time as a frame: a big day is never a frame of strings.
        lake.write_bytes(url, to_jsonl_gz(events.slice(start, ROWS_PER_FILE).to_pandas()))
        written.append(url)
    return written
