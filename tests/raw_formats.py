"""Write small files in real sources' raw layouts, for end-to-end runs of those sources.

The real Amazon Reviews and iPinYou files are large and have no sample in
../shared/data; these writers produce a few hundred lines in exactly the layouts the
parsers read (``sources/formats/amazon_reviews.py``, ``sources/formats/ipinyou.py``), with
a learnable signal, over several days.
"""

import datetime as dt
import json
from pathlib import Path

import numpy as np


def write_amazon_reviews(path: Path, days: list[dt.date], per_day: int = 150, seed: int = 0) -> Path:
    """Amazon Reviews 2023 JSON lines: 40 users rate 30 items; each user likes one of 3 groups."""
    rng = np.random.default_rng(seed)
    lines = []
    for day in days:
        start = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
        for n in range(per_day):
            user, item = int(rng.integers(0, 40)), int(rng.integers(0, 30))
            liked = user % 3 == item % 3
            rating = float(np.clip(round(rng.normal(4.3 if liked else 2.7, 0.7)), 1, 5))
            lines.append(
                {
                    "rating": rating,
                    "title": "ok" if rating >= 4 else "meh",
                    "text": "review text",
                    "asin": f"B{item:09d}",
                    "parent_asin": f"P{item:09d}",
                    "user_id": f"A{user:05d}",
                    "timestamp": start + n * 500_000,
                    "helpful_vote": int(rng.integers(0, 4)),
                    "verified_purchase": bool(rng.random() < 0.8),
                }
            )
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def write_ipinyou_logs(folder: Path, days: list[dt.date], per_day: int = 200, seed: int = 0) -> Path:
    """One ``imp.`` and one ``clk.`` log per day; creatives on slot format Na are clicked more."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for day in days:
        impressions, clicks = [], []
        for n in range(per_day):
            creative, slot_format = int(rng.integers(0, 12)), ["Na", "Fixed"][int(rng.integers(0, 2))]
            bid_id = f"{day:%Y%m%d}{n:024d}"
            # Beijing clock times between 08:00 and 23:59, so the UTC day is the same day.
            clock = dt.datetime(day.year, day.month, day.day, 8) + dt.timedelta(seconds=int(rng.integers(0, 57_000)))
            fields = [
                bid_id, clock.strftime("%Y%m%d%H%M%S") + "000", "1", f"user{int(rng.integers(0, 50)):04d}",
                "Mozilla/5.0", "1.2.3.*", str(int(rng.integers(1, 5))), str(int(rng.integers(1, 9))), "1",
                f"domain{int(rng.integers(0, 6))}", "url", "null", f"slot{int(rng.integers(0, 5))}", "300", "250",
                "FirstView", slot_format, "0", f"creative{creative:03d}", "300", str(int(rng.integers(20, 120))),
                "null", "1458", "10006,10110",
            ]  # fmt: skip
            impressions.append("\t".join(fields))
            if rng.random() < (0.35 if (slot_format == "Na") == (creative % 2 == 0) else 0.08):
                clicks.append("\t".join([bid_id, fields[1], "2", *fields[3:]]))
        (folder / f"imp.{day:%Y%m%d}.txt").write_text("\n".join(impressions) + "\n")
        (folder / f"clk.{day:%Y%m%d}.txt").write_text("\n".join(clicks) + "\n")
    return folder
