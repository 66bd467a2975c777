"""Dagster assets: thin wrappers that call the plain libraries and report metadata.

Groups follow the data's path: ``landing`` -> ``bronze`` -> the dbt layers ``staging`` ->
``intermediate`` -> ``marts`` -> ``quality``
and ``datasets`` -> ``models`` (and the ``model_zoo``) -> ``serving`` -> ``monitoring``.
"""

from collections.abc import Iterable, Sequence

import dagster as dg

# Who answers for each group, as the catalog shows it: one place to put your own teams.
GROUP_OWNERS: dict[str, list[str]] = {
    "landing": ["team:data-platform"],
    "bronze": ["team:data-platform"],
    "staging": ["team:data-platform"],
    "intermediate": ["team:data-platform"],
    "marts": ["team:data-platform"],
    "quality": ["team:data-platform"],
    "datasets": ["team:ml"],
    "models": ["team:ml"],
    "model_zoo": ["team:ml"],
    "serving": ["team:ml"],
    "monitoring": ["team:ml"],
    "batch": ["team:ml"],
}


def with_group_owners(assets: Iterable[dg.AssetsDefinition]) -> Sequence[dg.AssetsDefinition]:
    """``assets`` with each spec's owners set from ``GROUP_OWNERS`` (an asset of a group
    not listed there keeps its own)."""
    return dg.map_asset_specs(
        lambda spec: spec.replace_attributes(owners=GROUP_OWNERS.get(spec.group_name, list(spec.owners))),
        list(assets),
    )
