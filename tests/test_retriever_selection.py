"""The automatic retrieval choice (``models.retriever_selection``) on toy data: real two-tower
training of a few steps, real full-catalogue evaluation, popularity as the baseline."""

import dataclasses
import datetime as dt

import pytest
import toy_examples

from models.recommender import train_recommender
from models.retrieval.two_tower import RetrievalConfig
from models.retriever_selection import (
    FEW_USERS,
    METRIC,
    POPULARITY,
    RETRIEVER_CANDIDATES,
    select_retriever,
)
from models.selection import SKIPPED, TRAINED
from reclake.feature_spec import load_feature_spec

DAYS = ("2024-01-01", "2024-01-02", "2024-01-03")
WINDOW = [dt.date.fromisoformat(day) for day in DAYS]
SPEC = toy_examples.SPEC
SMALL = RetrievalConfig(sampling_bias_correction=True, batch_size=128, epochs=3, embedding_dim=16)
CANDIDATES = {
    POPULARITY: None,
    "tt_logq": SMALL,
    "tt_plain": dataclasses.replace(SMALL, sampling_bias_correction=False),
}


@pytest.fixture(scope="module")
def world():
    examples = toy_examples.make_training_examples(n_users=60, n_items=40, n_rows=6000, days=DAYS)
    _, items = toy_examples.feature_tables(examples)
    return examples, items


@pytest.fixture(scope="module")
def choice(world):
    examples, items = world
    lines = []
    selected = select_retriever(examples, SPEC, WINDOW, items, CANDIDATES, budget_s=600, log=lines.append)
    selected.log_lines = lines
    return selected


@pytest.mark.unit
class TestRetrieverChoice:
    def test_every_candidate_has_validation_and_held_out_figures(self, choice):
        assert [c.name for c in choice.candidates] == list(CANDIDATES)
        assert choice.metric == METRIC and choice.selecting_users > 0
        for candidate in choice.candidates:
            assert candidate.status == TRAINED, candidate.reason
            assert 0 <= candidate.validation[METRIC] <= 1 and 0 <= candidate.test[METRIC] <= 1
            assert {"recall@10", "ndcg@10", "recall_at_k"} <= set(candidate.validation)
            assert candidate.seconds > 0
        assert len(choice.log_lines) == len(CANDIDATES)

    def test_the_best_on_the_validation_day_is_chosen_and_a_two_tower_served(self, choice):
        best = max(choice.candidates, key=lambda c: c.validation[METRIC])
        assert choice.chosen == best.name
        two_towers = [c for c in choice.candidates if c.config is not None]
        served = max(two_towers, key=lambda c: c.validation[METRIC])
        assert choice.served == served.name and choice.served_config == served.config
        ordered = sorted(c.validation[METRIC] for c in choice.candidates)
        assert choice.margin == pytest.approx(ordered[-1] - ordered[-2])

    def test_the_report_names_every_candidate_the_choice_and_the_margin(self, choice):
        summary = choice.summary()
        assert summary["chosen"] == choice.chosen and summary["served"] == choice.served
        assert summary["popularity_won"] == (choice.chosen == POPULARITY)
        assert set(summary["candidates"]) == set(CANDIDATES)
        for figures in summary["candidates"].values():
            assert {"validation_hr@10", "test_hr@10", "seconds"} <= set(figures)
        table = choice.markdown()
        assert f"**{choice.chosen}** (chosen)" in table and "validation hr@10" in table and "test hr@10" in table
        assert "Chosen retrieval" in table and f"{choice.margin:.4f} above" in table
        assert ("Caution: only" in table) == (choice.selecting_users < FEW_USERS)

    def test_popularity_winning_is_said_and_the_best_two_tower_still_served(self, world):
        examples, items = world
        # A two-tower that has barely moved from its random start: popularity must beat it.
        frozen = dataclasses.replace(SMALL, learning_rate=1e-6, epochs=1)
        selected = select_retriever(examples, SPEC, WINDOW, items, {POPULARITY: None, "frozen": frozen}, budget_s=600)
        popularity, two_tower = selected.candidates
        assert popularity.validation[METRIC] > two_tower.validation[METRIC]
        assert selected.chosen == POPULARITY and selected.popularity_won and selected.served == "frozen"
        assert "Popularity beat every two-tower" in selected.markdown()
        assert selected.summary()["popularity_won"] is True
        assert "frozen** " not in selected.markdown() and "| frozen (served) |" in selected.markdown()

    def test_out_of_budget_two_towers_are_skipped_but_one_always_trains(self, world):
        examples, items = world
        selected = select_retriever(examples, SPEC, WINDOW, items, CANDIDATES, budget_s=0)
        statuses = {c.name: c.status for c in selected.candidates}
        assert statuses == {POPULARITY: TRAINED, "tt_logq": TRAINED, "tt_plain": SKIPPED}
        assert selected.served == "tt_logq"

    def test_the_choice_feeds_the_recommender(self, world, choice):
        examples, items = world
        trained = train_recommender(
            examples, SPEC, WINDOW, items, ranker="hashed_lr", retrieval_config=choice.served_config
        )
        assert trained.retrieval is not None and "retrieval_hr@10" in trained.metrics

    def test_every_default_candidate_is_exportable(self):
        # The export's query tower reads single-valued features only: no pooled history.
        assert POPULARITY in RETRIEVER_CANDIDATES
        assert all(c is None or c.history_length == 0 for c in RETRIEVER_CANDIDATES.values())

    def test_a_source_without_ids_has_no_retrieval_choice(self, world):
        examples, items = world
        with pytest.raises(ValueError, match="no user and item ids"):
            select_retriever(examples, load_feature_spec("criteo"), WINDOW, items)
        with pytest.raises(ValueError, match="at least one two-tower"):
            select_retriever(examples, SPEC, WINDOW, items, {POPULARITY: None})
