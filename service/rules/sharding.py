"""Which instance serves a stream: rendezvous (highest-random-weight) hashing over ``cluster.shards``.

Every instance reads the same stream list and serves the streams whose owner is its shard. The
owner of a stream is the shard with the highest weight ``hash(shard, stream id)``: every instance
computes the same answer without talking to the others, and going from ``n`` to ``m`` shards moves
only the streams whose highest weight changes hands (growing by one shard moves about ``1 / m`` of
them, all to the new shard; nothing moves between the shards that stay). The hash is BLAKE2b of
the shard index and the stream id (stable across processes, machines and Python versions; not
Python's ``hash``, which is salted per process).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable


def weight(shard: int, stream: str) -> int:
    digest = hashlib.blake2b(f"{shard}\x00{stream}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def owner(stream: str, shards: int) -> int:
    """The shard (0 .. shards - 1) that serves ``stream``."""
    if shards < 1:
        raise ValueError(f"shards must be >= 1, got {shards}")
    return max(range(shards), key=lambda s: weight(s, stream))


def assignment(streams: Iterable[str], shards: int) -> dict[str, int]:
    return {s: owner(s, shards) for s in streams}


_ORDINAL = re.compile(r".*-(\d+)")


def ordinal(hostname: str) -> int | None:
    """A StatefulSet pod's ordinal from its hostname (``trackcast-2`` -> 2), or None."""
    m = _ORDINAL.fullmatch(hostname.split(".")[0])
    return int(m.group(1)) if m else None
