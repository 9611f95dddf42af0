"""Rules partitions: which rules worker owns an asset's stream.

Every asset id maps to one of ``partitions`` partitions by a stable hash (CRC-32 of the UTF-8
id, mod ``partitions``), the same in every process and Python version (``hash()`` is salted per
process, so it cannot be used). ThingsBoard partitions its rule-engine queues by entity id the
same way: one consumer owns a device's stream, so its rules see its samples in one place.
Pure: no I/O.
"""

from __future__ import annotations

import zlib

__all__ = [
    "RULES_CLIENT_ID_PREFIX",
    "parse_partitions",
    "partition_of",
    "rules_client_id",
    "rules_topic",
]

_PREFIX = "coldchain/v1/rules"
# A worker's partition k connects as ``coldchain-rules-<k>``; ``coldchain broker users
# --rules-partitions N`` writes broker users with exactly these names (docs/operations.md).
RULES_CLIENT_ID_PREFIX = "coldchain-rules"


def partition_of(asset_id: str, partitions: int) -> int:
    """The partition (0 .. ``partitions`` - 1) of ``asset_id``. Raises ValueError when
    ``partitions`` < 1."""
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    return zlib.crc32(asset_id.encode()) % partitions


def rules_topic(partition: int) -> str:
    """The MQTT topic carrying partition ``partition``'s forwarded samples, custody changes and
    recompute requests (``coldchain/v1/rules/<partition>``)."""
    return f"{_PREFIX}/{partition}"


def rules_client_id(partition: int, prefix: str = RULES_CLIENT_ID_PREFIX) -> str:
    """The MQTT client id (and, with partition users, the broker username) of partition
    ``partition``'s owner: ``<prefix>-<partition>`` (default ``coldchain-rules-<k>``). The broker
    allows one connection per client id, so a partition has one owner."""
    return f"{prefix}-{partition}"


def parse_partitions(spec: str, partitions: int) -> list[int]:
    """``"0,2"``, ``"0-3"``, ``"all"`` (or a mix: ``"0,4-5"``) -> sorted distinct partition
    numbers. Raises ValueError naming the bad part (not a number, out of 0 .. partitions-1)."""
    if spec.strip() == "all":
        return list(range(partitions))
    out: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise ValueError(f"partition {part!r} is not a number or a range a-b") from None
        if not 0 <= lo <= hi < partitions:
            raise ValueError(f"partition {part!r} is outside 0..{partitions - 1}")
        out.update(range(lo, hi + 1))
    return sorted(out)
