"""The catalog's query language: parsing, errors that point at the spot, and the two evaluators
(SQL for SQLite, Python for DynamoDB) selecting the same frames."""

from __future__ import annotations

import random

import pytest

from training import query as q
from training.catalog import FrameRecord, SqliteCatalog

pytestmark = pytest.mark.unit

KNOWN = {"person", "car", "bicycle", "traffic_light", "truck"}


def test_precedence_bare_labels_quoted_names_and_scores() -> None:
    e = q.parse('person >= 5 and car or not bicycle and "Traffic Light".score > 0.5', KNOWN)
    assert e == q.Or(
        q.And(q.Cmp("person", "count", ">=", 5), q.Cmp("car", "count", ">=", 1)),
        q.And(q.Not(q.Cmp("bicycle", "count", ">=", 1)), q.Cmp("traffic_light", "score", ">", 0.5)),
    )
    assert q.parse("(person = 2) AND frame <= 10", KNOWN) == q.And(
        q.Cmp("person", "count", "==", 2), q.Cmp("frame", "value", "<=", 10)
    )
    counts, scores = {"person": 6, "car": 1}, {"person": 0.9}
    assert q.evaluate(e, counts, scores, {})
    assert not q.evaluate(e, {"person": 4, "bicycle": 1}, {}, {})
    assert q.evaluate(q.parse("traffic_light.score > 0.5", KNOWN), {}, {"traffic_light": 0.7}, {})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("persn >= 5", "column 1: unknown field 'persn'; did you mean 'person'?"),
        ("person >= 5 and kar", "column 17: unknown field 'kar'; did you mean 'car'?"),
        ("person >=", "column 10: expected a number, found the end"),
        ("person > 5 car", "column 12: expected 'and', 'or' or the end, found 'car'"),
        ("(person", "column 8: expected ')', found the end"),
        ("width", "column 1: width needs a comparison"),
        ("person.area > 1", "person.area: a label has .count and .score"),
        ("person >= five", "column 11: expected a number, found 'five'"),
        ("person ~ 3", "column 8: unexpected '~ 3'"),
        ("  ", "the query is empty"),
    ],
)
def test_bad_queries_say_what_and_where(text: str, message: str) -> None:
    with pytest.raises(q.QueryError) as err:
        q.parse(text, KNOWN)
    assert message in str(err.value)


def test_sql_and_python_evaluation_select_the_same_frames() -> None:
    rng = random.Random(3)
    cat = SqliteCatalog(":memory:", create=True)
    records = []
    for i in range(300):
        labels = rng.sample(sorted(KNOWN), rng.randint(0, 3))
        counts = {k: rng.randint(1, 8) for k in labels}
        scores = {k: round(rng.random(), 3) for k in labels}
        records.append(FrameRecord(f"/f/{i:04d}.png", "/f", i + 1, 1280, 720, "test", counts, scores,
                                   anonymized=f"/a/{i}.png" if i % 3 else None))  # fmt: skip
    cat.put(records)
    queries = ["person >= 5 and car >= 1", "(bicycle or truck) and not person", "traffic_light.score > 0.5",
               "objects >= 10 or frame < 20", "anonymized == 0 and car", "person != 3", "not (car or person)"]  # fmt: skip
    for text in queries:
        e = q.parse(text, cat.known_labels())
        sql = {r.id for r in cat.select(e)}
        py = {r.id for r in records if q.evaluate(e, r.counts, r.scores, r.fields())}
        assert sql == py, text
        assert 0 < len(py) < len(records), f"{text}: selects some frames, not none or all"
    assert cat.known_labels() == KNOWN
