"""The errors of :mod:`lvwlib.data`: a dataset missing, an image unreadable, a copy altered."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not where it was looked for; the message says where and how to get it."""


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names the file."""


class DatasetIntegrityError(ValueError):
    """A dataset copy does not match its MANIFEST.tsv (or its own list files)."""
