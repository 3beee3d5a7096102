"""A small persistent (immutable, copy-on-write) mapping for the core's large tables.

The held queue can hold 10,000 entries and the coordinator ingests thousands of bus events a
second; copying a 10,000-key dict per event would dominate. Keys are spread over a fixed number
of shards, so an update copies one shard (a few hundred keys at most) and the shard tuple.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Iterator, Mapping
from typing import TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

_SHARDS = 64
_EMPTY: dict[object, object] = {}


class PMap(Mapping[K, V]):
    """An immutable mapping whose `set`/`remove` return a new map sharing untouched shards."""

    __slots__ = ("_len", "_shards")

    def __init__(self, items: Iterable[tuple[K, V]] | Mapping[K, V] = ()) -> None:
        shards: list[dict[K, V]] = [{} for _ in range(_SHARDS)]
        pairs = items.items() if isinstance(items, Mapping) else items
        for k, v in pairs:
            shards[hash(k) % _SHARDS][k] = v
        self._shards: tuple[dict[K, V], ...] = tuple(shards)
        self._len = sum(len(s) for s in shards)

    @classmethod
    def _make(cls, shards: tuple[dict[K, V], ...], length: int) -> PMap[K, V]:
        new: PMap[K, V] = cls.__new__(cls)
        new._shards = shards
        new._len = length
        return new

    def __getitem__(self, key: K) -> V:
        return self._shards[hash(key) % _SHARDS][key]

    def __contains__(self, key: object) -> bool:
        return key in self._shards[hash(key) % _SHARDS]

    def __iter__(self) -> Iterator[K]:
        for shard in self._shards:
            yield from shard

    def __len__(self) -> int:
        return self._len

    def __repr__(self) -> str:
        return f"PMap({dict(self.items())!r})"

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        if not isinstance(other, Mapping):
            return NotImplemented
        return len(self) == len(other) and all(k in other and other[k] == v for k, v in self.items())

    __hash__ = None  # type: ignore[assignment]  # a mapping is not hashable, like dict

    def set(self, key: K, value: V) -> PMap[K, V]:
        """A map with `key` bound to `value` (self when nothing changes)."""
        i = hash(key) % _SHARDS
        shard = self._shards[i]
        old = shard.get(key, _EMPTY)
        if old is value:
            return self
        new_shard = dict(shard)
        new_shard[key] = value
        shards = (*self._shards[:i], new_shard, *self._shards[i + 1 :])
        return self._make(shards, self._len + (old is _EMPTY))

    def remove(self, key: K) -> PMap[K, V]:
        """A map without `key` (self when it is absent)."""
        i = hash(key) % _SHARDS
        shard = self._shards[i]
        if key not in shard:
            return self
        new_shard = dict(shard)
        del new_shard[key]
        shards = (*self._shards[:i], new_shard, *self._shards[i + 1 :])
        return self._make(shards, self._len - 1)

    def update(self, pairs: Iterable[tuple[K, V]]) -> PMap[K, V]:
        """A map with every pair bound (one copy per touched shard)."""
        touched: dict[int, dict[K, V]] = {}
        length = self._len
        for key, value in pairs:
            i = hash(key) % _SHARDS
            shard = touched.get(i)
            if shard is None:
                shard = touched[i] = dict(self._shards[i])
            length += key not in shard
            shard[key] = value
        if not touched:
            return self
        shards = tuple(touched.get(i, s) for i, s in enumerate(self._shards))
        return self._make(shards, length)


def empty() -> PMap[K, V]:
    """An empty map (typed at the call site)."""
    return PMap()
