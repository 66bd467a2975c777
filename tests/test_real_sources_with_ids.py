"""Sources with user and/or item ids run end to end: ranking, and retrieval where both exist.

MovieLens-100K (real, ratings), Amazon Reviews and iPinYou (their raw layouts written by
``raw_formats``); see ``real_source_support`` for what each run checks.
"""

import pytest
from real_source_support import run_source_end_to_end

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("source", ["movielens", "amazon_reviews", "ipinyou"])
def test_source_runs_end_to_end(source, tmp_path, session_state_dir):
    run_source_end_to_end(source, tmp_path, session_state_dir)
