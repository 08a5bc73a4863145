"""``kubectl logs`` options and what they select from a container's output.

:mod:`.apiserver` parses the query of ``pods/NAME/log`` into
:class:`LogOptions`; :meth:`.runtime.ProcessRuntime.logs` keeps each container run's
output with the time each line arrived (:class:`TimedLog`) and applies them
with :func:`select`, as the kubelet does from its CRI log files.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from relearn_sandbox import errors

_NEWLINE_PIECES = re.compile(rb"[^\n]*\n|[^\n]+")


@dataclass(frozen=True)
class LogOptions:
    container: str | None = None
    follow: bool = False
    previous: bool = False
    tail_lines: int | None = None
    since: datetime.datetime | None = None  # from sinceSeconds or sinceTime
    timestamps: bool = False
    limit_bytes: int | None = None

    @classmethod
    def from_query(cls, query: Mapping[str, str], now: datetime.datetime | None = None) -> LogOptions:
        """The options of a ``GET pods/NAME/log`` request (400 on a malformed one, as a real server)."""

        def flag(name: str) -> bool:
            return query.get(name) in ("true", "1")

        def number(name: str, minimum: int) -> int | None:
            raw = query.get(name)
            if raw is None:
                return None
            try:
                value = int(raw)
            except ValueError as error:
                raise errors.bad_request(f"{name}: Invalid value: {raw!r}: must be an integer") from error
            if value < minimum:
                raise errors.bad_request(f"{name}: Invalid value: {value}: must be greater than or equal to {minimum}")
            return value

        since = None
        seconds = number("sinceSeconds", 1)
        if seconds is not None and query.get("sinceTime"):
            raise errors.bad_request("at most one of sinceTime or sinceSeconds may be specified")
        if seconds is not None:
            since = (now or datetime.datetime.now(datetime.UTC)) - datetime.timedelta(seconds=seconds)
        elif query.get("sinceTime"):
            try:
                since = datetime.datetime.fromisoformat(query["sinceTime"].replace("Z", "+00:00"))
            except ValueError as error:
                raise errors.bad_request(f"sinceTime: Invalid value: {query['sinceTime']!r}") from error
        return cls(
            container=query.get("container") or None,
            follow=flag("follow"),
            previous=flag("previous"),
            tail_lines=number("tailLines", 0),
            since=since,
            timestamps=flag("timestamps"),
            limit_bytes=number("limitBytes", 1),
        )


MAX_LOG_BYTES = 10 * 1024 * 1024  # the kubelet's default containerLogMaxSize
MAX_LINE_BYTES = 16 * 1024  # the CRI log's longest line before it is split


@dataclass
class TimedLog:
    """One container run's output lines and when each line began to arrive.

    Line positions are absolute: once past ``max_bytes`` the oldest lines
    are let go (as the kubelet rotates its log files), and ``dropped``
    counts them, so a follower's position stays valid."""

    lines: list[bytes | bytearray] = field(default_factory=list)
    times: list[datetime.datetime] = field(default_factory=list)
    partial: bool = False  # the last line has no newline yet
    dropped: int = 0
    size: int = 0
    max_bytes: int = MAX_LOG_BYTES

    def append(self, chunk: bytes, at: datetime.datetime) -> None:
        # Lines end at "\n" only, as the kubelet's: a "\r" (progress bars) stays inside a line.
        for piece in _NEWLINE_PIECES.findall(chunk):
            if self.partial:
                self.lines[-1] += piece  # a bytearray: extended in place, not copied
            else:
                self.lines.append(bytearray(piece))
                self.times.append(at)
            # A line past MAX_LINE_BYTES is closed, as the CRI splits long lines,
            # so a progress bar that never prints "\n" cannot grow without bound.
            self.partial = not piece.endswith(b"\n") and len(self.lines[-1]) < MAX_LINE_BYTES
            self.size += len(piece)
        if self.size > self.max_bytes:
            self._let_oldest_go()

    def _let_oldest_go(self) -> None:
        # Down to half the limit at once, so trimming costs O(1) per line on average.
        count, freed = 0, 0
        while count < len(self.lines) - 1 and self.size - freed > self.max_bytes // 2:
            freed += len(self.lines[count])
            count += 1
        del self.lines[:count], self.times[:count]
        self.dropped += count
        self.size -= freed

    @property
    def end(self) -> int:
        """The position after the last line."""
        return self.dropped + len(self.lines)


def stamp(at: datetime.datetime) -> bytes:
    """The kubelet's ``--timestamps`` prefix: RFC 3339 with nanoseconds."""
    return at.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z ").encode()


def select(log: TimedLog, options: LogOptions, start: int = 0, *, complete_only: bool = False) -> tuple[bytes, int]:
    """The bytes ``options`` select from lines ``start:`` of ``log`` (``tailLines``
    and ``sinceTime``/``sinceSeconds``, with ``timestamps`` prefixes), and the
    position of the next line to read. ``complete_only`` holds back a line still
    being written (while following a running container). ``limitBytes`` is the
    caller's: it counts across follow-up reads."""
    end = len(log.lines) - (1 if complete_only and log.partial else 0)
    first = max(0, start - log.dropped)
    if options.since is not None:
        first = next((i for i in range(first, end) if log.times[i] >= options.since), end)
    if options.tail_lines is not None and start == 0:
        first = max(first, end - options.tail_lines)
    data = b"".join((stamp(log.times[i]) if options.timestamps else b"") + log.lines[i] for i in range(first, end))
    return data, max(log.dropped + end, start)
