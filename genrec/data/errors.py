"""Errors raised while reading or preparing data; each names the file, line or item at fault."""

from __future__ import annotations

from genrec.errors import DataError  # noqa: F401  (the base class, defined with the other error types)


class DataNotFoundError(DataError):
  """No copy of a dataset was found where it was looked for."""


class HeaderError(DataError):
  """An atomic-file header is not a tab-separated list of `name:type` fields with a known type."""


class MissingColumnError(DataError):
  """A required column (user_id, item_id in `.inter`) is absent."""


class BadValueError(DataError):
  """A value does not parse as its declared type (e.g. text in a float column)."""


class FieldCountError(DataError):
  """A line has a different number of tab-separated fields than its header."""


class UnknownIdError(DataError):
  """An interaction names an item (or user) that its side table does not list."""


class DuplicateIdError(DataError):
  """A side table lists the same item (or user) id twice."""
