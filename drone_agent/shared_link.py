"""One connection shared by the plug-ins that name it (position, power and clock from one port).

The agent builds each plug-in on its own, from its own config section, but a flight controller
has one serial port and gpsd one socket worth holding. `SharedLinks` hands out one link per key
(e.g. the connection string): the first `acquire` opens it, later ones reuse it, the last
`release` closes it.

Raises: `ValueError` from `acquire` when an option given here conflicts with the value another
section gave for the same link; whatever the link's constructor raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Generic, Protocol, TypeVar


class Link(Protocol):
    def stats(self) -> dict[str, int]: ...

    def close(self) -> None: ...


L = TypeVar("L", bound=Link)


class SharedLinks(Generic[L]):
    """Links made by `make(**options)`, one per `key(options)`, counted by users."""

    def __init__(self, make: Callable[..., L], key: Callable[[dict[str, Any]], Hashable]
                 ) -> None:
        self._make, self._key = make, key
        self._lock = threading.Lock()
        self._links: dict[Any, tuple[L, dict[str, Any], int]] = {}

    def acquire(self, options: dict[str, Any]) -> L:
        """The link for `key(options)`, made if nobody holds it. Raises `ValueError`."""
        name = self._key(options)
        with self._lock:
            if name not in self._links:
                link = self._make(**options)
                self._links[name] = (link, dict(options), 1)
                return link
            link, given, users = self._links[name]
            for option, value in options.items():
                if option in given and given[option] != value:
                    raise ValueError(f"{name}: option {option} is {value!r} here but "
                                     f"{given[option]!r} in another section sharing the link")
            self._links[name] = (link, given | options, users + 1)
            return link

    def release(self, link: L) -> None:
        """One user fewer; the last one closes the link."""
        with self._lock:
            for name, (held, given, users) in self._links.items():
                if held is link:
                    if users > 1:
                        self._links[name] = (held, given, users - 1)
                        return
                    del self._links[name]
                    break
            else:
                return
        link.close()


class LinkUser(Generic[L]):
    """Base of a source holding a shared link: its counters, and a close() safe to call twice."""

    def __init__(self, links: SharedLinks[L], options: dict[str, Any]) -> None:
        self._links = links
        self.link = links.acquire(options)
        self._closed = False

    def stats(self) -> dict[str, int]:
        return self.link.stats()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._links.release(self.link)
