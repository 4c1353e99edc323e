"""The ordered log of API requests: who asked for what, and what the server answered.

Every resource request (``/api/...``, ``/apis/...``) is appended when its answer is sent, with
a ``seq`` that only grows (clearing the log does not reset it), so a test can read what
happened since a point it remembered. Memory is bounded: only the last
:data:`REQUEST_LOG_SIZE` entries are kept (about 110 bytes each, so at most ~250 MB when
full); older ones are dropped first.
"""

from __future__ import annotations

import itertools
import sys
from collections import deque
from typing import Any

REQUEST_LOG_SIZE = 2_000_000
"""Entries kept; a request beyond this drops the oldest entry."""

FIELDS = ("seq", "verb", "apiGroup", "resource", "subresource", "namespace", "name", "user", "code")
"""Keys of one entry, in the order they are served."""

_Entry = tuple[str, str, str, str, str, str, str, int]
_intern = sys.intern


class RequestLog:
    """API requests in the order they were answered."""

    def __init__(self, maxlen: int = REQUEST_LOG_SIZE) -> None:
        self._entries: deque[_Entry] = deque(maxlen=maxlen)
        self._next = 1

    @property
    def next_seq(self) -> int:
        """The ``seq`` the next request will get."""
        return self._next

    @property
    def first_seq(self) -> int:
        """The ``seq`` of the oldest entry kept (``next_seq`` when empty)."""
        return self._next - len(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def append(
        self,
        *,
        verb: str,
        api_group: str,
        resource: str,
        subresource: str,
        namespace: str,
        name: str,
        user: str,
        code: int,
    ) -> int:
        """Record one answered request; returns its ``seq``."""
        seq = self._next
        self._next += 1
        self._entries.append(
            (
                _intern(verb),
                _intern(api_group),
                _intern(resource),
                _intern(subresource),
                _intern(namespace),
                _intern(name),
                _intern(user),
                code,
            )
        )
        return seq

    def since(self, seq: int, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
        """Entries with ``seq >= seq`` (at most ``limit``), and the ``seq`` to ask for next."""
        first = self.first_seq
        start = min(max(seq - first, 0), len(self._entries))
        stop = None if limit is None else start + max(limit, 0)
        out = [
            dict(zip(FIELDS, (first + start + i, *entry), strict=True))
            for i, entry in enumerate(itertools.islice(self._entries, start, stop))
        ]
        return out, first + start + len(out)

    def clear(self) -> None:
        """Forget every entry; ``seq`` keeps growing."""
        self._entries.clear()

    # -- persistence across a restart ---------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        return {"next": self._next, "entries": [list(e) for e in self._entries]}

    def load(self, data: dict[str, Any]) -> None:
        self._entries.clear()
        for raw in data.get("entries") or []:
            verb, group, resource, sub, ns, name, user, code = raw
            self._entries.append((verb, group, resource, sub, ns, name, user, int(code)))
        self._next = max(int(data.get("next", 1)), len(self._entries) + 1)
