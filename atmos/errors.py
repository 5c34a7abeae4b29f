"""Exceptions raised by atmos.

Every error atmos raises on bad input is an :class:`AtmosError`. Messages follow one
rule: name the offending value, say what was expected, and say how to fix it. The
CLI prints these messages without a traceback and exits with status 2.

The subclasses also derive from the matching builtin (``ValueError``, ``LookupError``,
``OSError``) so that generic ``except ValueError`` code keeps working.
"""

from __future__ import annotations

__all__ = [
    "AtmosError",
    "CatalogError",
    "ConfigError",
    "DataError",
    "GridError",
    "SourceError",
]


class AtmosError(Exception):
    """Base class of every error atmos raises on bad input."""


class CatalogError(AtmosError, LookupError):
    """Unknown catalog entry, or a catalog file that cannot be read."""

    def __str__(self) -> str:  # LookupError/KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class DataError(AtmosError, ValueError):
    """A dataset does not have what is asked of it (variables, coordinates, values)."""


class GridError(AtmosError, ValueError):
    """A grid is misspecified, or a tensor does not match its grid."""


class SourceError(AtmosError, OSError):
    """A path or URL cannot be opened or reached."""


class ConfigError(AtmosError, ValueError):
    """A configuration value is invalid."""
