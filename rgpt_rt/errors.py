"""Typed errors. Every message names the problem and, where there is one, the fix."""

from __future__ import annotations


class RgptError(Exception):
    """Base class of every error rgpt_rt raises on purpose."""


class ConfigError(RgptError, ValueError):
    """A checkpoint or engine config is missing a field or holds a value this runtime does not support."""


class CheckpointError(RgptError):
    """A checkpoint cannot be loaded: missing, unexpected or mis-shaped tensors, or an unsafe format."""
