"""How long steps report how far they are: a callback with the fraction done, which the CLI connects to a bar."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[float], None]
"""Called with the fraction done, 0.0 to 1.0."""
