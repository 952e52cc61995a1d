"""Error type shared by the backbones package."""

from __future__ import annotations

__all__ = ["BackboneError"]


class BackboneError(ValueError):
    """A user-facing, one-line problem with a backbone request (bad name, tap, checkpoint, ...)."""
