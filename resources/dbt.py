"""The dbt CLI resource: dagster-dbt's, without a ``dbt --version`` process per build."""

import importlib.metadata
import sys
from functools import cached_property
from pathlib import Path

import dagster_dbt
from packaging import version

DBT_EXECUTABLE = str(Path(sys.executable).parent / "dbt")
"""The dbt installed beside this interpreter, whether or not the venv is activated."""


class DbtCliResource(dagster_dbt.DbtCliResource):
    """dagster-dbt's ``DbtCliResource``, which learns dbt's version by running
    ``dbt --version`` once per resource instance: that is once per run in a run worker,
    a process importing dbt (about 2.5 s of a core here) before every ``dbt build``.

    When ``dbt_executable`` is the dbt beside this interpreter (``DBT_EXECUTABLE``, the
    default set-up), that dbt is the installed dbt-core package, whose version the
    package metadata gives without a process. Any other executable is asked as before.
    """

    @cached_property
    def _cli_version(self) -> version.Version:
        if Path(self.dbt_executable) == Path(DBT_EXECUTABLE):
            try:
                return version.parse(importlib.metadata.version("dbt-core"))
            except importlib.metadata.PackageNotFoundError:
                pass  # a dbt without dbt-core (the Fusion engine): ask it
        return super()._cli_version
