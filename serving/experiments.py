"""A/B experiments at serving time: which arm (model) answers a user, deterministically.

An ``Experiment`` splits traffic between *serving arms* (each a model tag, ``None`` for the
pinned champion model, and a traffic ``share``) and may add *shadow arms* that score the
requests of a serving arm (or every request) without their scores being served.

Assignment scheme (``Experiment.assign``)::

    bucket = int.from_bytes(sha256(f"{salt}:{user_id}").digest()[:8], "big") % 10_000

The serving arms own contiguous bucket ranges in the order they are listed, each sized by
its share: arm ``i`` owns ``[round(S_{i-1} * 10_000), round(S_i * 10_000))`` where ``S_i``
is the cumulative share of the first ``i`` arms (the last range always ends at 10,000).
So:

- the assignment is a pure function of (salt, user id, shares): the same user gets the
  same arm in every process, worker and restart (sticky, no state to share);
- changing the split of two arms (50/50 -> 90/10) moves only users of the shrinking arm
  to the growing one; users of an arm whose range did not shrink never move. With three
  or more arms this holds when shares move between *neighbouring* arms of the list; a
  change that moves share across an arm shifts that arm's range, and some of its users
  with it: put the arms whose shares change next to each other;
- a new ``salt`` reshuffles everyone (use one per experiment, so two experiments in a row
  are independent);
- 10,000 buckets give shares a resolution of 0.01 %; over many users the observed split
  matches the shares (the tests check 100,000 random ids to within 1 %).

``user_id`` is hashed as text (``str(user_id)``), as the prediction logs keep it.

Configuration (``experiment_from_dict``, ``load_experiment``; the service reads
``RECLAKE_EXPERIMENT``: a YAML/JSON file path or inline JSON, empty for no experiment)::

    name: ranker-v7-vs-v6
    salt: ranker-v7-2024-03
    arms:
      - {name: champion, model_tag: null, share: 0.9}            # the pinned model
      - {name: challenger, model_tag: "reclake_ranker:v7", share: 0.1}
      - {name: shadow, model_tag: "reclake_ranker:v8", shadow: true, shadow_of: champion}

Shadow arms need a ``model_tag``; their ``share`` is ignored (default 0); ``shadow_of``
names the serving arm whose requests they score (omitted: every request).
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

BUCKETS = 10_000
# The conventional name of the control arm; the A/B report compares the others against it.
CONTROL_ARM = "champion"
_SHARE_TOLERANCE = 1e-6
_ARM_KEYS = {"name", "model_tag", "share", "shadow", "shadow_of"}
_EXPERIMENT_KEYS = {"name", "salt", "arms"}
_EVERY_ARM = object()  # shadow_arms() without an argument: every shadow arm


def bucket(salt: str, user_id: str) -> int:
    """The user's bucket in ``[0, BUCKETS)``: the first 8 bytes of
    ``sha256(f"{salt}:{user_id}")`` as a big-endian integer, mod ``BUCKETS``."""
    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


@dataclass(frozen=True)
class Arm:
    """One arm of an experiment.

    Attributes:
        name: e.g. ``champion``, ``challenger``; logged as the prediction log's ``arm``.
        model_tag: the BentoML model tag it serves; None: the pinned (champion) model.
        share: its traffic share in [0, 1]; the serving arms' shares sum to 1.
        shadow: a shadow arm scores requests without serving them (``share`` ignored).
        shadow_of: the serving arm whose requests a shadow arm scores; None: every request.
    """

    name: str
    model_tag: str | None
    share: float
    shadow: bool = False
    shadow_of: str | None = None


@dataclass(frozen=True)
class Experiment:
    """A named traffic split; see the module docstring for the assignment scheme.

    Raises:
        ValueError: at construction, for an invalid experiment (no serving arm, shares
            out of [0, 1] or not summing to 1, duplicate names, a shadow arm without a
            model tag or shadowing an unknown arm, ...).
    """

    name: str
    salt: str
    arms: tuple[Arm, ...]
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "arms", tuple(self.arms))
        _validate(self)
        ends, cumulative = [], 0.0
        for arm in self.serving_arms():
            cumulative += arm.share
            ends.append(min(BUCKETS, round(cumulative * BUCKETS)))
        ends[-1] = BUCKETS
        object.__setattr__(self, "_ends", tuple(ends))

    def serving_arms(self) -> tuple[Arm, ...]:
        """The arms that serve traffic, in their listed order."""
        return tuple(arm for arm in self.arms if not arm.shadow)

    def shadow_arms(self, serving_arm: str | None | object = _EVERY_ARM) -> tuple[Arm, ...]:
        """The shadow arms. With ``serving_arm``, those that score a request that arm
        served (``shadow_of`` that arm, or None: every request); with None (a request
        outside the experiment, e.g. without a user id), those whose ``shadow_of`` is None."""
        shadows = tuple(arm for arm in self.arms if arm.shadow)
        if serving_arm is _EVERY_ARM:
            return shadows
        return tuple(arm for arm in shadows if arm.shadow_of is None or arm.shadow_of == serving_arm)

    def arm(self, name: str) -> Arm:
        """The arm called ``name``.

        Raises:
            KeyError: when there is none.
        """
        for arm in self.arms:
            if arm.name == name:
                return arm
        raise KeyError(f"experiment {self.name!r} has no arm {name!r}")

    def assign(self, user_id: str) -> str:
        """The name of the serving arm that answers ``user_id``: deterministic and sticky."""
        index = bisect.bisect_right(self._ends, bucket(self.salt, str(user_id)))
        return self.serving_arms()[index].name

    def bucket_ranges(self) -> dict[str, tuple[int, int]]:
        """Serving arm -> its buckets ``[start, end)`` out of ``BUCKETS`` (empty for share 0)."""
        starts = (0, *self._ends[:-1])
        return {arm.name: (start, end) for arm, start, end in zip(self.serving_arms(), starts, self._ends, strict=True)}

    def describe(self) -> dict[str, Any]:
        """The experiment as plain data (what ``experiment_from_dict`` reads back)."""
        return {
            "name": self.name,
            "salt": self.salt,
            "arms": [
                {
                    "name": a.name,
                    "model_tag": a.model_tag,
                    "share": a.share,
                    "shadow": a.shadow,
                    "shadow_of": a.shadow_of,
                }
                for a in self.arms
            ],
        }


def _validate(experiment: Experiment) -> None:
    """Raise ValueError naming the first problem of ``experiment``."""
    for attribute in ("name", "salt"):
        value = getattr(experiment, attribute)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{attribute}: a non-empty string is required, got {value!r}")
    if not experiment.arms:
        raise ValueError("arms: at least one arm is required")
    names: set[str] = set()
    for i, arm in enumerate(experiment.arms):
        where = f"arms[{i}]"
        if not isinstance(arm, Arm):
            raise ValueError(f"{where}: expected an Arm, got {type(arm).__name__}")
        if not isinstance(arm.name, str) or not arm.name.strip():
            raise ValueError(f"{where}.name: a non-empty string is required, got {arm.name!r}")
        where = f"arms[{i}] ({arm.name})"
        if arm.name in names:
            raise ValueError(f"{where}.name: duplicate arm name {arm.name!r}; arm names must be unique")
        names.add(arm.name)
        if arm.model_tag is not None and (not isinstance(arm.model_tag, str) or not arm.model_tag.strip()):
            raise ValueError(f"{where}.model_tag: a non-empty string or null, got {arm.model_tag!r}")
        if isinstance(arm.share, bool) or not isinstance(arm.share, int | float) or not math.isfinite(arm.share):
            raise ValueError(f"{where}.share: a number in [0, 1] is required, got {arm.share!r}")
        if not 0 <= arm.share <= 1:
            raise ValueError(f"{where}.share: must lie in [0, 1], got {arm.share}")
        if not isinstance(arm.shadow, bool):
            raise ValueError(f"{where}.shadow: true or false, got {arm.shadow!r}")
        if arm.shadow and arm.model_tag is None:
            raise ValueError(f"{where}: a shadow arm needs a model_tag (the pinned model already scores every request)")
        if arm.shadow_of is not None and not arm.shadow:
            raise ValueError(f"{where}.shadow_of: only a shadow arm (shadow: true) shadows another arm")
    serving = [arm for arm in experiment.arms if not arm.shadow]
    if not serving:
        raise ValueError("arms: at least one serving arm (shadow: false) is required")
    total = sum(arm.share for arm in serving)
    if abs(total - 1) > _SHARE_TOLERANCE:
        shares = ", ".join(f"{arm.name}={arm.share:g}" for arm in serving)
        raise ValueError(f"arms: the serving arms' shares must sum to 1, got {total:g} ({shares})")
    serving_names = {arm.name for arm in serving}
    for arm in experiment.arms:
        if arm.shadow_of is not None and arm.shadow_of not in serving_names:
            raise ValueError(
                f"arms ({arm.name}).shadow_of: {arm.shadow_of!r} is not a serving arm "
                f"(one of {', '.join(sorted(serving_names))})"
            )


def experiment_from_dict(raw: Mapping[str, Any], where: str) -> Experiment:
    """An ``Experiment`` from plain data (the layout of the module docstring).

    Args:
        raw: ``{"name", "salt", "arms": [{"name", "model_tag", "share", "shadow", "shadow_of"}]}``;
            ``model_tag`` defaults to None, ``shadow`` to false, a shadow arm's ``share`` to 0.
        where: where ``raw`` came from (a file, ``RECLAKE_EXPERIMENT``), for error messages.

    Raises:
        ValueError: ``"<where>: <field>: <problem>"`` for the first problem found.
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: an experiment must be a mapping with name, salt and arms, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _EXPERIMENT_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(str, unknown))}; expected {sorted(_EXPERIMENT_KEYS)}")
    missing = sorted(_EXPERIMENT_KEYS - set(raw))
    if missing:
        raise ValueError(f"{where}: missing key(s) {', '.join(missing)}")
    raw_arms = raw["arms"]
    if not isinstance(raw_arms, list | tuple):
        raise ValueError(f"{where}: arms: a list of arms is required, got {type(raw_arms).__name__}")
    arms = []
    for i, raw_arm in enumerate(raw_arms):
        if not isinstance(raw_arm, Mapping):
            raise ValueError(f"{where}: arms[{i}]: a mapping is required, got {type(raw_arm).__name__}")
        unknown = sorted(set(raw_arm) - _ARM_KEYS)
        if unknown:
            raise ValueError(
                f"{where}: arms[{i}]: unknown key(s) {', '.join(map(str, unknown))}; expected {sorted(_ARM_KEYS)}"
            )
        if "name" not in raw_arm:
            raise ValueError(f"{where}: arms[{i}]: missing key name")
        shadow = raw_arm.get("shadow", False)
        if "share" not in raw_arm and not shadow:
            raise ValueError(f"{where}: arms[{i}] ({raw_arm['name']}): missing key share")
        arms.append(
            Arm(
                name=raw_arm["name"],
                model_tag=raw_arm.get("model_tag"),
                share=raw_arm.get("share", 0.0),
                shadow=shadow,
                shadow_of=raw_arm.get("shadow_of"),
            )
        )
    try:
        return Experiment(name=raw["name"], salt=raw["salt"], arms=tuple(arms))
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def load_experiment(path_or_json: str | None) -> Experiment | None:
    """The experiment of ``RECLAKE_EXPERIMENT``-style text: inline JSON (starting with
    ``{``), or the path of a YAML or JSON file. None when the text, or the file's
    document, is empty: no experiment, every request goes to the pinned model.

    Raises:
        FileNotFoundError: when the path does not exist.
        ValueError: for unreadable JSON/YAML or an invalid experiment (naming where).
    """
    text = (path_or_json or "").strip()
    if not text:
        return None
    if text.startswith("{"):
        where = "inline JSON experiment"
        try:
            raw = json.loads(text)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{where}: invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from None
    else:
        path = Path(text).expanduser()
        where = str(path)
        if not path.is_file():
            raise FileNotFoundError(f"experiment file {path} does not exist (a YAML/JSON file or inline JSON expected)")
        content = path.read_text(encoding="utf-8")
        try:
            raw = json.loads(content) if path.suffix.lower() == ".json" else yaml.safe_load(content)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{where}: invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"
            ) from None
        except yaml.YAMLError as error:
            raise ValueError(f"{where}: invalid YAML: {error}") from None
    if raw is None:
        return None
    return experiment_from_dict(raw, where)
