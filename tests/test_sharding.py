"""Sharding (service/rules/sharding.py, cluster config): who serves a stream, and what moves when the
shard count changes. Unit tests, no I/O."""

from __future__ import annotations

from collections import Counter

import pytest

from service.config import ClusterConfig, load_settings
from service.errors import ConfigError
from service.rules.sharding import assignment, ordinal, owner

pytestmark = pytest.mark.unit

IDS = [f"cam-{i:04d}" for i in range(3000)]


def test_streams_spread_evenly_over_the_shards() -> None:
    for shards in (2, 3, 7):
        counts = Counter(assignment(IDS, shards).values())
        assert sorted(counts) == list(range(shards))
        assert max(counts.values()) / min(counts.values()) < 1.25, counts  # about +-3 sd of a fair split


def test_a_new_shard_takes_only_its_share_and_nothing_moves_between_the_others() -> None:
    before, after = assignment(IDS, 3), assignment(IDS, 4)
    moved = [s for s in IDS if before[s] != after[s]]
    assert all(after[s] == 3 for s in moved)  # moved streams go to the new shard, none between old ones
    assert 0.2 < len(moved) / len(IDS) < 0.3  # about a quarter
    back = assignment(IDS, 3)
    assert back == before  # and shrinking back moves exactly those


def test_the_owner_is_stable_across_processes_and_versions() -> None:
    # The mapping is part of the deployment contract: a change moves every cluster's streams on
    # upgrade (and Python's salted hash() would differ per process). These are BLAKE2b's answers.
    ids = ("cam1", "pitch-north", "door", "a", "b", "c")
    assert [owner(s, 3) for s in ids] == [0, 2, 0, 2, 0, 1]
    assert [owner(s, 5) for s in ids] == [0, 2, 0, 2, 4, 1]
    assert owner("x", 1) == 0
    with pytest.raises(ValueError):
        owner("x", 0)


def test_the_shard_comes_from_config_or_the_pod_ordinal() -> None:
    assert ordinal("trackcast-2") == 2 and ordinal("trackcast-12.svc.cluster.local") == 12
    assert ordinal("laptop") is None
    assert ClusterConfig(shards=3).resolve("trackcast-1") == 1
    assert ClusterConfig(shards=3, shard=2).resolve("laptop") == 2
    assert ClusterConfig().resolve("laptop") == 0
    with pytest.raises(ConfigError, match=r"cluster\.shard: not set"):
        ClusterConfig(shards=3).resolve("laptop")
    with pytest.raises(ConfigError, match="no StatefulSet ordinal below 3"):
        ClusterConfig(shards=3).resolve("trackcast-5")
    with pytest.raises(ConfigError, match=r"cluster: .*shard 3 is not below shards \(3\)"):
        load_settings(None, {"cluster": {"shards": 3, "shard": 3}})


def test_env_sets_the_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRACKCAST_CLUSTER__SHARDS", "4")
    monkeypatch.setenv("TRACKCAST_CLUSTER__SHARD", "3")
    c = load_settings(None).cluster
    assert (c.shards, c.shard) == (4, 3)
