"""A/B testing: the deterministic router (serving.experiments), the statistics
(monitoring.ab_test) and the daily ``ab_test_report`` asset on a small real lake and
DuckDB warehouse. Nothing is mocked."""

import datetime as dt
import hashlib
import json
import math
import random
import subprocess
import sys

import dagster as dg
import duckdb
import numpy as np
import pandas as pd
import pytest
from conftest import PROJECT_ROOT, make_settings

from monitoring.ab_test import (
    attribute_outcomes,
    compare_arms,
    required_sample_size,
    two_proportion_power,
    wilson_interval,
)
from reclake.lake import Lake
from serving.experiments import BUCKETS, Arm, Experiment, bucket, experiment_from_dict, load_experiment
from serving.prediction_log import PredictionLogger, build_record

DAY = dt.date(2024, 3, 1)
MIDNIGHT = dt.datetime(2024, 3, 1, tzinfo=dt.UTC)


def _experiment(*shares: float, salt: str = "salt-1", names=("champion", "challenger", "third")) -> Experiment:
    arms = tuple(
        Arm(name, None if i == 0 else f"ranker:v{i}", share)
        for i, (name, share) in enumerate(zip(names, shares, strict=False))
    )
    return Experiment(name="exp", salt=salt, arms=arms)


def _user_ids(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"{rng.getrandbits(64):016x}" for _ in range(n)]


# ---- the router ----------------------------------------------------------------------


@pytest.mark.unit
def test_the_bucket_is_the_documented_sha256_prefix_and_assignment_is_deterministic():
    users = _user_ids(2000)
    for user in users[:50]:
        digest = hashlib.sha256(f"salt-1:{user}".encode()).digest()
        assert bucket("salt-1", user) == int.from_bytes(digest[:8], "big") % 10_000
    first, second = _experiment(0.5, 0.5), _experiment(0.5, 0.5)
    assignments = [first.assign(u) for u in users]
    assert assignments == [second.assign(u) for u in users] == [first.assign(u) for u in users]
    assert first.bucket_ranges() == {"champion": (0, 5000), "challenger": (5000, 10_000)}
    assert first.assign(42) == first.assign("42")  # ids are hashed as text


@pytest.mark.unit
def test_assignment_is_sticky_across_processes_with_other_hash_seeds():
    users = _user_ids(300, seed=1)
    here = [_experiment(0.3, 0.7).assign(u) for u in users]
    code = (
        "import json, sys\n"
        "from serving.experiments import Arm, Experiment\n"
        "e = Experiment('exp', 'salt-1', (Arm('champion', None, 0.3), Arm('challenger', 'ranker:v1', 0.7)))\n"
        "print(json.dumps([e.assign(u) for u in json.load(sys.stdin)]))\n"
    )
    for seed in ("1", "987"):
        done = subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(users),
            capture_output=True,
            text=True,
            cwd=PROJECT_ROOT,
            env={"PYTHONHASHSEED": seed, "PATH": "/usr/bin:/bin"},
            check=True,
        )
        assert json.loads(done.stdout) == here


@pytest.mark.unit
def test_changing_the_split_moves_only_users_of_the_shrinking_arm_to_the_growing_arm():
    users = _user_ids(20_000, seed=2)
    before = {u: _experiment(0.5, 0.5).assign(u) for u in users}
    after = {u: _experiment(0.9, 0.1).assign(u) for u in users}
    moved = {(before[u], after[u]) for u in users if before[u] != after[u]}
    assert moved == {("challenger", "champion")}
    assert all(after[u] == "champion" for u in users if before[u] == "champion")  # the growing arm keeps its users
    share_moved = sum(before[u] != after[u] for u in users) / len(users)
    assert abs(share_moved - 0.4) < 0.01, share_moved

    back = {u: _experiment(0.5, 0.5).assign(u) for u in users}
    assert back == before  # the split is a pure function of the shares: going back restores everyone

    # Three arms, share moving between neighbours (40/30/30 -> 40/20/40): the first arm's users never move.
    three_before = {u: _experiment(0.4, 0.3, 0.3).assign(u) for u in users}
    three_after = {u: _experiment(0.4, 0.2, 0.4).assign(u) for u in users}
    moved = {(three_before[u], three_after[u]) for u in users if three_before[u] != three_after[u]}
    assert moved == {("challenger", "third")}


@pytest.mark.unit
def test_a_new_salt_reshuffles_the_users():
    users = _user_ids(20_000, seed=3)
    old = [_experiment(0.5, 0.5, salt="2024-03").assign(u) for u in users]
    new = [_experiment(0.5, 0.5, salt="2024-04").assign(u) for u in users]
    changed = sum(a != b for a, b in zip(old, new, strict=True)) / len(users)
    assert 0.47 < changed < 0.53, changed  # independent halves: about half change arm


@pytest.mark.unit
@pytest.mark.parametrize("shares", [(0.5, 0.5), (0.9, 0.1), (0.7, 0.2, 0.1), (0.25, 0.0, 0.75)])
def test_the_observed_split_over_100k_random_ids_is_within_1_percent_of_the_shares(shares):
    experiment = _experiment(*shares)
    counts = pd.Series([experiment.assign(u) for u in _user_ids(100_000, seed=4)]).value_counts()
    for arm in experiment.serving_arms():
        observed = counts.get(arm.name, 0) / 100_000
        assert abs(observed - arm.share) < 0.01, (arm.name, observed, arm.share)
    assert sum(end - start for start, end in experiment.bucket_ranges().values()) == BUCKETS


@pytest.mark.unit
def test_shadow_arms_do_not_serve_and_name_the_arm_they_shadow():
    experiment = experiment_from_dict(
        {
            "name": "exp",
            "salt": "s",
            "arms": [
                {"name": "champion", "share": 0.8},
                {"name": "challenger", "model_tag": "ranker:v2", "share": 0.2},
                {"name": "shadow_all", "model_tag": "ranker:v3", "shadow": True},
                {"name": "shadow_champion", "model_tag": "ranker:v4", "shadow": True, "shadow_of": "champion"},
            ],
        },
        "test",
    )
    assert [a.name for a in experiment.serving_arms()] == ["champion", "challenger"]
    assert [a.name for a in experiment.shadow_arms()] == ["shadow_all", "shadow_champion"]
    assert [a.name for a in experiment.shadow_arms("challenger")] == ["shadow_all"]
    assert [a.name for a in experiment.shadow_arms("champion")] == ["shadow_all", "shadow_champion"]
    assert [a.name for a in experiment.shadow_arms(None)] == ["shadow_all"]  # a request outside the experiment
    assert {experiment.assign(u) for u in _user_ids(500)} == {"champion", "challenger"}
    assert experiment.arm("champion").model_tag is None
    assert experiment_from_dict(experiment.describe(), "round trip") == experiment


@pytest.mark.unit
@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "share": 0.5}, {"name": "b", "share": 0.4}]}, "sum to 1"),
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "share": 0.5}, {"name": "a", "share": 0.5}]}, "duplicate"),
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "share": 1.5}, {"name": "b", "share": -0.5}]}, r"\[0, 1\]"),
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "share": "1"}]}, "a number"),
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "shares": 1}]}, "unknown key"),
        ({"name": "e", "arms": [{"name": "a", "share": 1}]}, "missing key.*salt"),
        ({"name": "e", "salt": "", "arms": [{"name": "a", "share": 1}]}, "salt"),
        ({"name": "e", "salt": "s", "arms": []}, "at least one"),
        ({"name": "e", "salt": "s", "arms": [{"name": "a", "share": 1}, {"name": "x", "shadow": True}]}, "model_tag"),
        (
            {
                "name": "e",
                "salt": "s",
                "arms": [
                    {"name": "a", "share": 1},
                    {"name": "x", "model_tag": "m:1", "shadow": True, "shadow_of": "b"},
                ],
            },
            "not a serving arm",
        ),
        ({"name": "e", "salt": "s", "arms": [{"name": "x", "model_tag": "m:1", "shadow": True}]}, "serving arm"),
        ({"name": "e", "salt": "s", "arms": {"a": 1}}, "a list"),
    ],
)
def test_invalid_experiments_are_refused_with_a_clear_error(raw, message):
    with pytest.raises(ValueError, match=message) as error:
        experiment_from_dict(raw, "experiments.yaml")
    assert str(error.value).startswith("experiments.yaml: ")


@pytest.mark.unit
def test_load_experiment_reads_inline_json_yaml_and_json_files_and_empty_means_none(tmp_path):
    raw = {
        "name": "e",
        "salt": "s",
        "arms": [{"name": "champion", "share": 0.9}, {"name": "b", "model_tag": "m:2", "share": 0.1}],
    }
    expected = experiment_from_dict(raw, "raw")
    assert load_experiment("") is None and load_experiment("   ") is None and load_experiment(None) is None
    assert load_experiment(json.dumps(raw)) == expected
    (tmp_path / "e.json").write_text(json.dumps(raw))
    (tmp_path / "e.yaml").write_text(
        "name: e\nsalt: s\narms:\n  - {name: champion, share: 0.9}\n  - {name: b, model_tag: 'm:2', share: 0.1}\n"
    )
    (tmp_path / "empty.yaml").write_text("# no experiment running\n")
    assert load_experiment(str(tmp_path / "e.json")) == expected == load_experiment(str(tmp_path / "e.yaml"))
    assert load_experiment(str(tmp_path / "empty.yaml")) is None
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_experiment(str(tmp_path / "missing.yaml"))
    with pytest.raises(ValueError, match="inline JSON experiment: invalid JSON"):
        load_experiment('{"name": ')
    (tmp_path / "bad.yaml").write_text("name: e\nsalt: s\narms:\n  - {name: a, share: 0.7}\n")
    with pytest.raises(ValueError, match=r"bad\.yaml: arms: the serving arms' shares must sum to 1, got 0\.7"):
        load_experiment(str(tmp_path / "bad.yaml"))


# ---- the statistics -------------------------------------------------------------------


def _traffic(rng: np.random.Generator, ctrs: dict[str, float], n: int) -> pd.DataFrame:
    """``n`` impressions per arm: served scores ~ Beta(2, 18) (mean 0.1), each clicked with
    probability score * ctr / 0.1 (so an arm with ctr 0.1 is calibrated)."""
    frames = []
    for arm, ctr in ctrs.items():
        scores = rng.beta(2, 18, n)
        clicked = (rng.random(n) < scores * ctr / 0.1).astype(int)
        frames.append(pd.DataFrame({"arm": arm, "score": scores, "clicked": clicked}))
    return pd.concat(frames, ignore_index=True)


@pytest.mark.unit
def test_the_figures_of_one_arm():
    assert wilson_interval(10, 100) == pytest.approx((0.0552, 0.1744), abs=1e-4)
    assert 14_700 < required_sample_size(0.10, 0.10) < 14_800  # p 0.10 vs 0.11, alpha 0.05, power 0.8
    assert required_sample_size(0.0, 0.1) is None and required_sample_size(1.0, 0.1) is None
    frame = pd.DataFrame(
        {
            "arm": ["champion"] * 4 + ["b"] * 4,
            "score": [0.5, 0.5, 0.2, 0.2, 0.4, 0.4, 0.4, 0.4],
            "clicked": [1, 0, 0, 0] * 2,
        }
    )
    comparison = compare_arms(frame, arms=["b", "champion", "idle"])
    assert comparison.control == "champion" and [a.arm for a in comparison.arms] == ["champion", "b", "idle"]
    champion = comparison.arms[0]
    assert (champion.requests, champion.clicks, champion.ctr) == (4, 1, 0.25)
    assert champion.mean_score == pytest.approx(0.35) and champion.calibration == pytest.approx(1.4)
    expected = -np.mean(np.log([0.5, 0.5, 0.8, 0.8]))
    assert champion.logloss == pytest.approx(expected)
    idle = comparison.arms[2]
    assert idle.requests == 0 and math.isnan(idle.ctr)
    assert comparison.verdicts() == {"b": "keep_running", "idle": "keep_running"}
    assert "champion (control)" in comparison.arms_markdown() and "keep_running" in comparison.tests_markdown()
    with pytest.raises(ValueError, match="0 or 1"):
        compare_arms(frame.assign(clicked=2))
    with pytest.raises(ValueError, match="null"):
        compare_arms(frame.assign(clicked=np.nan))


@pytest.mark.unit
def test_the_normal_tails_and_quantiles_agree_with_scipy():
    # The statistics use the standard library's normal distribution, not scipy (whose import
    # every Dagster process loading the definitions paid); scipy is the reference here.
    from scipy.stats import norm

    n = 1_000_000
    clicked = [1] * 100_000 + [0] * 900_000 + [1] * 110_000 + [0] * 890_000
    (test,) = compare_arms(pd.DataFrame({"arm": ["champion"] * n + ["b"] * n, "score": 0.1, "clicked": clicked})).tests
    assert test.z > 20  # a p-value near 1e-100: a tail computed as 1 - cdf would be 0
    assert test.p_value > 0 and test.p_value == pytest.approx(2 * norm.sf(test.z), rel=1e-9)
    z = norm.ppf(0.995)
    centre, half = (0.1 + z * z / 200) / (1 + z * z / 100), z * math.sqrt(0.0009 + z * z / 4e4) / (1 + z * z / 100)
    assert wilson_interval(10, 100, level=0.99) == pytest.approx((centre - half, centre + half), rel=1e-12)
    power = norm.cdf(
        (0.01 - norm.ppf(0.975) * math.sqrt(2 * 0.105 * 0.895 / 20_000)) / math.sqrt((0.09 + 0.11 * 0.89) / 20_000)
    )
    assert two_proportion_power(0.10, 0.11, 20_000) == pytest.approx(power, rel=1e-6)


@pytest.mark.unit
def test_a_challenger_20_percent_worse_is_retired_in_at_least_80_percent_of_50_seeds(capsys):
    n, effect = 5000, 0.2  # the MDE is the planted effect; 5000 > the ~3,900 required per arm
    verdicts = []
    for seed in range(50):
        frame = _traffic(np.random.default_rng(seed), {"champion": 0.10, "challenger": 0.08}, n)
        comparison = compare_arms(frame, min_detectable_effect=effect)
        (test,) = comparison.tests
        verdicts.append(test.verdict)
    retired = verdicts.count("retire") / len(verdicts)
    expected = two_proportion_power(0.10, 0.08, n)
    with capsys.disabled():
        print(
            f"\nplanted -20% CTR: retire in {retired:.0%} of 50 seeds (analytic power {expected:.1%}); {verdicts.count('promote')} promote"
        )
    assert retired >= 0.8 and "promote" not in verdicts
    challenger = comparison.arms[1]
    assert challenger.calibration == pytest.approx(1.25, rel=0.1)  # it predicts 0.1, clicks come at 0.08


@pytest.mark.unit
def test_two_copies_of_one_arm_raise_a_false_alarm_in_at_most_10_percent_of_100_seeds(capsys):
    alarms = 0
    for seed in range(100):
        frame = _traffic(np.random.default_rng(1000 + seed), {"champion": 0.10, "copy": 0.10}, 5000)
        (test,) = compare_arms(frame, min_detectable_effect=0.2).tests
        alarms += test.verdict != "keep_running"
    with capsys.disabled():
        print(f"\nA/A: false alarm in {alarms}% of 100 seeds (alpha 5%)")
    assert alarms <= 10


@pytest.mark.unit
def test_no_verdict_before_the_required_sample_and_a_better_challenger_is_promoted():
    rng = np.random.default_rng(5)
    small = compare_arms(_traffic(rng, {"champion": 0.10, "challenger": 0.07}, 3000))  # default MDE 10 %
    (test,) = small.tests
    assert test.significant and not test.sample_reached and test.verdict == "keep_running"
    assert "sample not reached" in test.reason
    (test,) = compare_arms(_traffic(rng, {"champion": 0.10, "challenger": 0.12}, 20_000)).tests
    assert test.sample_reached and test.verdict == "promote" and test.relative_lift == pytest.approx(0.2, abs=0.06)


@pytest.mark.unit
def test_outcomes_are_attributed_to_the_newest_prediction_within_the_window():
    at = pd.Timestamp("2024-03-01 12:00", tz="UTC")
    predictions = pd.DataFrame(
        [
            ("r1", at, "a", "u1", ["i1", "i2"], [0.3, 0.2], "recommend", "{}"),
            ("r2", at + pd.Timedelta(minutes=10), "a", "u1", ["i1"], [0.4], "recommend", "{}"),
            (
                "r3",
                at,
                "b",
                None,
                ["i5", "i6"],
                [0.1, 0.9],
                "predict",
                '{"rows": [{"user_id": "u7"}, {"user_id": "u8"}]}',
            ),
            ("r4", at, None, "u9", ["i1"], [0.5], "recommend", "{}"),  # no arm: not in the experiment
            ("r5", at, "b", None, ["i1"], [0.5], "predict", "{}"),  # no user: not matchable
        ],
        columns=["request_id", "logged_at", "arm", "user_id", "items", "scores", "endpoint", "features"],
    )
    naive = at.tz_localize(None)
    events = pd.DataFrame(
        [
            ("u1", "i1", naive + pd.Timedelta(minutes=15), 1),  # r1 and r2 both served i1: goes to r2
            ("u1", "i2", naive - pd.Timedelta(minutes=1), 1),  # before the prediction: nothing
            ("u1", "i2", naive + pd.Timedelta(minutes=31), 1),  # after the window: nothing
            ("u7", "i5", naive, 0),  # at the prediction: counts
            ("u8", "i6", naive + pd.Timedelta(minutes=29), 0),
            ("u8", "i6", naive + pd.Timedelta(minutes=30), 1),  # a click among the pair's events: clicked
            ("u9", "i1", naive + pd.Timedelta(minutes=1), 1),
        ],
        columns=["user_id", "item_id", "event_ts", "clicked"],
    )
    attribution = attribute_outcomes(predictions, events)
    frame = attribution.frame.set_index(["request_id", "item_id"])
    assert frame.loc[("r2", "i1"), "clicked"] == 1 and not frame.loc[("r1", "i1"), "matched"]
    assert not frame.loc[("r1", "i2"), "matched"]
    assert frame.loc[("r3", "i5"), "clicked"] == 0 and frame.loc[("r3", "i6"), "clicked"] == 1
    assert frame.loc[("r3", "i6"), "user_id"] == "u8"
    assert attribution.coverage() == {
        "logged_predictions": 5,
        "in_experiment": 4,
        "unattributable_requests": 1,
        "served_items": 5,
        "matched": 3,
        "unmatched": 2,
        "match_rate": 0.6,
    }


# ---- the asset ------------------------------------------------------------------------


def _write_day(settings, rng: np.random.Generator, experiment: Experiment, ctrs: dict[str, float]) -> dict:
    """A day of prediction logs through the real logger and the outcome events as a DuckDB
    ``fct_events``; returns what the report must find."""
    expected = {arm: {"requests": 0, "clicks": 0, "scores": []} for arm in ctrs}
    events, served = [], 0
    with PredictionLogger(settings.lake_root, settings.source, flush_interval_s=3600) as logger:
        for u in range(4200):
            user, in_experiment = f"u{u}", u < 4000
            arm = experiment.assign(user) if in_experiment else None
            at = MIDNIGHT + dt.timedelta(seconds=int(rng.integers(0, 86_400)))
            items = [f"i{(u * 7 + k) % 150}" for k in range(2)]
            scores = rng.uniform(0.2, 0.6, 2).round(4).tolist()
            record = build_record(
                endpoint="recommend",
                model_version="v1" if arm != "challenger" else "v2",
                features={"user_id": user},
                scores=scores,
                items=items,
                user_id=user,
                arm=arm,
                latency_ms=1.0,
                request_id=f"r{u}",
                logged_at=at,
            )
            assert logger.log(record)
            naive = at.replace(tzinfo=None)
            for k, (item, score) in enumerate(zip(items, scores, strict=True)):
                pair = 2 * u + k
                served += in_experiment
                if pair % 10 == 0:  # never shown to the user: no event
                    continue
                clicked = int(rng.random() < (ctrs[arm] if arm else 0.5))
                if pair % 10 == 1:  # an event after the window: unmatched
                    events.append((user, item, naive + dt.timedelta(minutes=45), clicked))
                    continue
                if pair % 10 == 2:  # an earlier click of the same pair counts for nothing
                    events.append((user, item, naive - dt.timedelta(minutes=5), 1))
                events.append((user, item, naive + dt.timedelta(seconds=int(rng.integers(0, 25 * 60))), clicked))
                if arm:
                    expected[arm]["requests"] += 1
                    expected[arm]["clicks"] += clicked
                    expected[arm]["scores"].append(score)
    assert logger.stats()["written"] == 4200
    frame = pd.DataFrame(events, columns=["user_id", "item_id", "event_ts", "clicked"])
    frame.insert(0, "event_id", [f"e{i}" for i in range(len(frame))])
    frame.insert(1, "event_date", frame["event_ts"].dt.date)
    with duckdb.connect(settings.warehouse_path) as connection:
        connection.register("events_frame", frame)
        connection.execute(
            "create or replace table fct_events as select event_id, event_date::date as event_date, "
            "event_ts::timestamp as event_ts, user_id, item_id, clicked::bigint as clicked from events_frame"
        )
    return {"arms": expected, "served": served, "matched": sum(e["requests"] for e in expected.values())}


@pytest.mark.integration
def test_the_daily_report_finds_the_worse_challenger_and_a_quiet_day_does_not_fail(tmp_path, session_state_dir):
    from definitions import build_definitions

    settings = make_settings(tmp_path, session_state_dir)
    defs = build_definitions(settings)
    report = defs.get_assets_def("ab_test_report")
    spec = report.specs_by_key[dg.AssetKey("ab_test_report")]
    assert spec.group_name == "monitoring" and spec.owners and spec.partitions_def is not None
    assert {dep.asset_key for dep in spec.deps} == {dg.AssetKey("prediction_logs"), dg.AssetKey("fct_events")}

    experiment = _experiment(0.5, 0.5, salt="report-test")
    expected = _write_day(settings, np.random.default_rng(11), experiment, {"champion": 0.5, "challenger": 0.3})
    assets = [defs.get_assets_def("prediction_logs"), report]
    resources = {k: defs.resources[k] for k in ("lake", "pipeline", "warehouse", "model_store")}
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(assets, partition_key=DAY.isoformat(), resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("ab_test_report")
    meta = {k: v.value for k, v in materialization.metadata.items()}
    assert (meta["status"], meta["verdict"], meta["control"]) == ("reported", "retire", "champion")
    assert meta["verdicts"] == {"challenger": "retire"}
    assert meta["coverage"] == {
        "logged_predictions": 4200,
        "in_experiment": 4000,
        "unattributable_requests": 0,
        "served_items": expected["served"],
        "matched": expected["matched"],
        "unmatched": expected["served"] - expected["matched"],
        "match_rate": round(expected["matched"] / expected["served"], 4),
    }
    assert expected["matched"] == 0.8 * expected["served"]
    stats = {row["arm"]: row for row in meta["arm_stats"]}
    assert list(stats) == ["champion", "challenger"]
    for arm, figures in expected["arms"].items():
        assert (stats[arm]["requests"], stats[arm]["clicks"]) == (figures["requests"], figures["clicks"])
        assert stats[arm]["mean_score"] == pytest.approx(np.mean(figures["scores"]))
        assert stats[arm]["ctr_low"] < stats[arm]["ctr"] < stats[arm]["ctr_high"]
    (test,) = meta["test_results"]
    assert test["sample_reached"] and test["p_value"] < 1e-6 and test["relative_lift"] < -0.3
    assert "| champion (control) |" in meta["arms"] and "CTR [95% CI]" in meta["arms"]
    assert "retire" in meta["test"] and "matched to an outcome" in meta["coverage_table"]
    print(f"\n{meta['arms']}\n\n{meta['test']}\n\n{meta['coverage_table']}")

    quiet = DAY + dt.timedelta(days=1)  # logs compacted, but no traffic
    result = dg.materialize(assets, partition_key=quiet.isoformat(), resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("ab_test_report")
    assert materialization.metadata["status"].value == "no experiment traffic"
    never = DAY + dt.timedelta(days=2)  # prediction_logs never ran for the day
    result = dg.materialize([report], partition_key=never.isoformat(), resources=resources, instance=instance)
    assert result.success
    (materialization,) = result.asset_materializations_for_node("ab_test_report")
    assert materialization.metadata["status"].value == "no experiment traffic"
    assert materialization.metadata["reason"].value == "no compacted prediction logs"


def test_a_challenger_that_wins_online_is_pinned(tmp_path):
    """``promote`` pins the bento model registered with the winning arm's model version;
    a shadow arm's answers never count as the arm's."""
    import tensorflow as tf

    from assets.ab_test import _promote_winner
    from resources.model_store import ModelStoreResource

    store = ModelStoreResource(
        bentoml_home=str(tmp_path / "bentoml"), pinned_tag_file=str(tmp_path / "pinned"), model_name="reclake_synthetic"
    )
    tf.saved_model.save(tf.Module(), str(tmp_path / "savedmodel"))  # a real (empty) SavedModel folder
    tags = {
        version: store.register(Lake(str(tmp_path)), str(tmp_path / "savedmodel"), {}, {"model_version": version})
        for version in ("v6", "v7")
    }
    logs = pd.DataFrame(
        {
            "arm": ["champion", "challenger", "challenger", "shadow"],
            "model_version": ["v6", "v7", "v7", "v6"],
            "shadow_of": [None, None, None, "r1"],
        }
    )
    context = dg.build_asset_context()
    assert _promote_winner(context, store, logs, {"challenger": "keep_running"}) is None and store.pinned() is None
    assert _promote_winner(context, store, logs, {"challenger": "promote"}) == tags["v7"]
    assert store.pinned() == tags["v7"]
