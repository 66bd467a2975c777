"""Settings: defaults, a config file and RECLAKE_* variables, with clear errors."""

from pathlib import Path

import pytest

from reclake.settings import load_settings


def test_defaults_live_under_the_project_state_folder():
    settings = load_settings({})
    assert settings.source == "synthetic"
    assert Path(settings.lake_root) == Path(settings.state_dir) / "lake"
    assert settings.synthetic.days == 7 and settings.synthetic.events_per_day == 50_000


def test_config_file_then_environment(tmp_path):
    config = tmp_path / "reclake.yaml"
    config.write_text("lake_root: s3://bucket/lake\ntraining_window_days: 5\nsynthetic:\n  days: 3\n  seed: 11\n")
    settings = load_settings({"RECLAKE_CONFIG": str(config), "RECLAKE_SYNTHETIC_SEED": "12"})
    assert settings.lake_root == "s3://bucket/lake"
    assert settings.training_window_days == 5
    assert settings.synthetic.days == 3 and settings.synthetic.seed == 12


def test_state_dir_moves_the_default_lake_and_warehouse(tmp_path):
    settings = load_settings({"RECLAKE_STATE_DIR": str(tmp_path)})
    assert settings.lake_root == str(tmp_path / "lake")
    assert settings.warehouse_path == str(tmp_path / "warehouse.duckdb")
    assert settings.bentoml_home == tmp_path / "bentoml"


def test_unknown_keys_and_bad_values_are_named(tmp_path):
    config = tmp_path / "reclake.yaml"
    config.write_text("lake_rot: /tmp/x\n")
    with pytest.raises(ValueError, match="lake_rot"):
        load_settings({"RECLAKE_CONFIG": str(config)})
    with pytest.raises(ValueError):
        load_settings({"RECLAKE_SYNTHETIC_DAYS": "seven"})
    with pytest.raises(FileNotFoundError, match="RECLAKE_CONFIG"):
        load_settings({"RECLAKE_CONFIG": str(tmp_path / "missing.yaml")})
