"""Values kept per generator, held weakly so that a closed and dropped generator is forgotten."""

from __future__ import annotations

import collections
import threading
import weakref
from collections.abc import Callable
from typing import Any

from nextword._types.results import Prediction


class PerGenerator:
    """A value per generator, held weakly when the generator allows it (else by id, strongly)."""

    def __init__(self) -> None:
        self._weak: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self._strong: dict[int, tuple[Any, Any]] = {}
        self._lock = threading.RLock()

    def get(self, generator: Any, make: Callable[[], Any]) -> Any:
        with self._lock:
            try:
                value = self._weak.get(generator)
                if value is None:
                    value = self._weak[generator] = make()
                return value
            except TypeError:  # not weak-referenceable or not hashable
                entry = self._strong.get(id(generator))
                if entry is None or entry[0] is not generator:
                    entry = self._strong[id(generator)] = (generator, make())
                return entry[1]

    def clear(self) -> None:
        with self._lock:
            self._weak = weakref.WeakKeyDictionary()
            self._strong.clear()


class LRU:
    """A small thread-safe least-recently-used map."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._data: collections.OrderedDict[Any, Prediction] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Prediction | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: Any, value: Prediction) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)
