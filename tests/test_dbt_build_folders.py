"""The feature build's artifact folders under dbt_project/target do not pile up: the
newest are kept, older ones go, and nothing a build may still be writing is touched."""

import os
import time

import pytest

from assets.features import BUILD_FOLDER, build_folder, prune_build_folders

pytestmark = pytest.mark.unit

DAY_S = 86_400


def _build_folder(targets, name: str, age_s: float, with_log: bool = True):
    folder = targets / name
    folder.mkdir()
    written = time.time() - age_s
    if with_log:
        (folder / "dbt.log").write_text("log")
        os.utime(folder / "dbt.log", (written, written))
    os.utime(folder, (written, written))
    return folder


def test_only_the_newest_builds_and_the_young_ones_are_kept(tmp_path):
    # 6 builds a day apart (oldest last), one a minute old, and one without a log yet.
    old = [_build_folder(tmp_path, f"{n:08x}-0000aaaa", (n + 2) * DAY_S) for n in range(6)]
    young = _build_folder(tmp_path, "ffffffff-0000bbbb", 60)
    starting = _build_folder(tmp_path, "eeeeeeee-0000cccc", 1, with_log=False)
    manual = _build_folder(tmp_path, "compiled", 30 * DAY_S, with_log=False)  # a manual `dbt build`'s

    deleted = prune_build_folders(tmp_path, keep=4)

    assert sorted(deleted) == sorted(old[2:])
    assert all(folder.is_dir() for folder in (*old[:2], young, starting, manual))


def test_a_folder_younger_than_a_day_is_spared_even_beyond_the_newest(tmp_path):
    builds = [_build_folder(tmp_path, f"{n:08x}-0000aaaa", 60 * (n + 1)) for n in range(3)]
    assert prune_build_folders(tmp_path, keep=1) == []
    assert all(folder.is_dir() for folder in builds)
    assert prune_build_folders(tmp_path / "missing") == []


def test_a_new_build_folder_is_one_that_pruning_recognises(tmp_path):
    first, second = (build_folder(tmp_path, "0123abcd-5678-90ef") for _ in range(2))
    assert BUILD_FOLDER.fullmatch(first.name) and first.name.startswith("0123abcd-")
    assert first != second and not first.exists()
