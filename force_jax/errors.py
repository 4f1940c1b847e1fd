"""Errors that describe a user's mistake, not a bug.

The command line prints these as one short message with no traceback and
exits with status 2; in Python they are ordinary exceptions. Their messages
name the config key or argument at fault and say how to fix it.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value, argument or workdir that cannot give a correct run."""


class WorkdirError(ConfigError):
    """A workdir that belongs to another config, or is in use by another run."""


class DivergedError(ConfigError):
    """A run whose loss became NaN or infinite: its settings cannot train the model."""


class StoreError(ConfigError):
    """An object store that stopped answering, or went away, during a run."""
