"""Ingestion in bounded memory: a day bigger than DuckDB's memory limit spills to disk
and gives exactly the bronze and quarantine of a run without a limit."""

import pyarrow.parquet as pq
import pytest
from test_bronze_validation import DAY
from test_engine_ingestion import LINES

from reclake.lake import Lake
from sources.ingest import ingest_landing_day

pytestmark = pytest.mark.integration


def test_a_day_larger_than_the_memory_limit_spills_and_gives_the_same_result(tmp_path):
    """A day's lines are staged into DuckDB file by file and validated under its memory
    limit: with a limit below the size of the day's lines, DuckDB spills to disk and the
    bronze and quarantine are those of a run without a limit."""
    import gzip
    import shutil

    from reclake.feature_spec import load_feature_spec
    from reclake.settings import SyntheticSettings
    from sources.landing_writer import land_synthetic_day
    from sources.synthetic import generate_day

    spec = load_feature_spec("synthetic")
    generated = generate_day(SyntheticSettings(events_per_day=400_000, n_users=5_000, n_items=500), DAY)
    lake = Lake(str(tmp_path / "8GB"))
    files = land_synthetic_day(lake, generated)
    repeated = gzip.decompress(lake.read_bytes(files[0])).splitlines()[5].decode()
    lake.write_bytes(lake.landing_dir("synthetic", DAY) + "/late.jsonl", "\n".join([*LINES, repeated]).encode())
    shutil.copytree(tmp_path / "8GB", tmp_path / "96MB")
    results = []
    for limit in ("8GB", "96MB"):
        day = ingest_landing_day(Lake(str(tmp_path / limit)), spec, DAY, memory_limit=limit)
        results.append((day, pq.read_table(day.bronze_url), pq.read_table(day.quarantine_url)))
    assert len(files) == 4 and sum(len(gzip.decompress(lake.read_bytes(f))) for f in files) > 96 * 2**20
    (free, free_bronze, free_quarantine), (limited, limited_bronze, limited_quarantine) = results
    counts = (limited.input_rows, limited.bronze_rows, limited.quarantined_rows)
    assert counts == (free.input_rows, free.bronze_rows, free.quarantined_rows)
    # The 400,000 generated events and the demo lines the synthetic spec accepts; the
    # demo file's own repeat and the repeated line of file 1 are duplicates.
    assert limited.bronze_rows >= 400_000 and limited.reasons["event_id"] == 2
    assert limited_bronze.equals(free_bronze)
    assert limited_quarantine.equals(free_quarantine)
