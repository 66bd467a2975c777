"""Click sources without user and item ids run end to end: a ranker served by /predict.

The real Criteo, Avazu and AliExpress samples in ../shared/data; see
``real_source_support`` for what each run checks.
"""

import pytest
from real_source_support import run_source_end_to_end

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("source", ["criteo", "avazu", "multitask"])
def test_source_runs_end_to_end(source, tmp_path, session_state_dir):
    run_source_end_to_end(source, tmp_path, session_state_dir)
