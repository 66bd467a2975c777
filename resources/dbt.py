"""The dbt CLI resource: dagster-dbt's, without its per-build start-up work that the
assets never use (a ``dbt --version`` process and a dbt adapter in the run worker)."""

import importlib.metadata
import sys
from functools import cached_property
from pathlib import Path

import dagster_dbt
from packaging import version

DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
"""The dbt installed beside this interpreter, whether or not the venv is activated."""


class DbtCliResource(dagster_dbt.DbtCliResource):
    """dagster-dbt's ``DbtCliResource``, minus two costs it pays before every command of
    a new resource instance (that is, of every run worker's ``dbt build``):

    - it learns dbt's version by running ``dbt --version``, a process importing dbt
      (about 2.5 s of a core here). When ``dbt_executable`` is the dbt beside this
      interpreter (``DBT_EXECUTABLE``, the default set-up), that dbt is the installed
      dbt-core package, whose metadata gives the version without a process; any other
      executable is asked as before;
    - it opens a dbt adapter in the calling process (importing the adapter and loading
      the profile, about 1 s), which dagster-dbt uses only to fetch column metadata
      (``fetch_column_metadata``). The assets do not ask for it, so no adapter is opened.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == Path(DBT_EXECUTABLE):
            try:
                return version.parse(importlib.metadata.version("dbt-core"))
            except importlib.metadata.PackageNotFoundError:
                pass  # a dbt without dbt-core (the Fusion engine): ask it
        return super()._cli_version

    def _initialize_dbt_core_adapter(self, args):  # noqa: ARG002 - dagster-dbt's signature
        return None  # dagster-dbt then skips column metadata, which nothing here fetches
