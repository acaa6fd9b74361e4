"""Progress on stderr for runs that take more than a moment, only on a terminal."""

from __future__ import annotations

import sys
import time

__all__ = ["Progress"]


class Progress:
    """Callable(files_delta, bytes_delta); prints at most 5 times a second
    after the first second, and only when ``stream`` is a terminal."""

    def __init__(self, label: str, *, total_files: int | None = None, stream=None, delay: float = 1.0):
        self.label = label
        self.total_files = total_files
        self.stream = stream or sys.stderr
        self.files = 0
        self.bytes = 0
        self.start = time.monotonic()
        self._next = self.start + delay
        self._shown = False
        self.enabled = bool(getattr(self.stream, "isatty", lambda: False)())

    def __call__(self, files: int, nbytes: int) -> None:
        self.files += files
        self.bytes += nbytes
        if not self.enabled:
            return
        now = time.monotonic()
        if now >= self._next:
            self._next = now + 0.2
            self._draw(now)

    def _draw(self, now: float) -> None:
        elapsed = max(now - self.start, 1e-6)
        of = f"/{self.total_files}" if self.total_files else ""
        rate = self.bytes / elapsed / 1e6
        self.stream.write(f"\r{self.label}: {self.files}{of} files, {self.bytes / 1e6:.1f} MB, {rate:.1f} MB/s ")
        self.stream.flush()
        self._shown = True

    def done(self) -> None:
        if self._shown:
            self._draw(time.monotonic())
            self.stream.write("\n")
            self.stream.flush()
