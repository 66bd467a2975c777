"""The per-source feature spec: every packaged spec is valid, and a bad one is named precisely."""

import pytest

from reclake.feature_spec import FeatureSpecError, available_specs, feature_spec_from_dict, load_feature_spec
from sources.formats import FORMATS

pytestmark = pytest.mark.unit


def test_every_source_has_a_valid_spec_that_round_trips():
    assert set(available_specs()) == set(FORMATS) | {"synthetic"}
    for source in available_specs():
        spec = load_feature_spec(source)
        assert spec.source == source
        assert feature_spec_from_dict(spec.to_dict()) == spec


def test_serving_inputs_cover_every_model_feature_exactly_once():
    for source in available_specs():
        spec = load_feature_spec(source)
        served = list(spec.request_features)
        for entity in spec.entities:
            served += spec.lookup_features(entity)
        assert sorted(served) == sorted(spec.model_feature_names), source


def test_ids_decide_the_entities_aggregates_and_retrieval():
    synthetic, criteo, ipinyou = (load_feature_spec(s) for s in ("synthetic", "criteo", "ipinyou"))
    assert synthetic.has_ids and synthetic.entities == ("user", "item")
    assert synthetic.aggregate_columns("user")[:3] == ("user_events_1d", "user_positives_1d", "user_positive_rate_1d")
    assert not criteo.has_ids and criteo.entities == () and criteo.aggregate_features == ()
    assert ipinyou.entities == ("item",) and not ipinyou.has_ids
    variables = criteo.dbt_vars()
    assert variables["has_user_id"] is False and variables["label_column"] == "clicked"
    assert [c["name"] for c in variables["feature_columns"]][:2] == ["i1", "i2"]
    assert {"name": "c1", "sql_type": "string", "role": "context"} in variables["feature_columns"]


def test_derived_time_columns_are_not_stored_in_bronze():
    spec = load_feature_spec("synthetic")
    assert "hour_of_day" in spec.model_feature_names
    assert "hour_of_day" not in [c.name for c in spec.bronze_feature_columns]


BASE = {
    "source": "demo",
    "label": {"column": "clicked", "kind": "binary"},
    "columns": {"device": {"role": "context", "dtype": "string", "transform": "embedding"}},
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"colums": {}}, "unknown key\\(s\\) \\['colums'\\]"),
        ({"label": {"column": "clicked", "kind": "ordinal"}}, "label.kind must be one of"),
        ({"label": {"column": "clicked", "kind": "binary", "log": True}}, "regression labels only"),
        ({"columns": {"x": {"role": "user", "dtype": "string", "transform": "hashing"}}}, "columns.x: transform hashing needs hash_buckets"),
        ({"columns": {"x": {"role": "user", "dtype": "string", "transform": "normalize"}}}, "needs a numeric dtype"),
        ({"columns": {"x": {"role": "page", "dtype": "string", "transform": "embedding"}}}, "columns.x: role must be one of"),
        ({"columns": {"clicked": {"role": "user", "dtype": "int", "transform": "embedding"}}}, "are ids, labels or event keys"),
        ({"crosses": [{"columns": ["device", "nope"], "hash_buckets": 8}]}, "crosses\\[0\\].columns must be two spec columns"),
        ({"aggregates": {"windows_days": []}}, "windows_days >= 1"),
    ],
)
def test_a_bad_spec_names_where_it_is_wrong(change, message):
    with pytest.raises(FeatureSpecError, match=message):
        feature_spec_from_dict({**BASE, **change}, where="demo.yaml")


def test_an_unknown_source_lists_the_packaged_specs():
    with pytest.raises(FeatureSpecError, match="packaged specs: amazon_reviews, avazu"):
        load_feature_spec("netflix")
