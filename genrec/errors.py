"""The error types every layer raises, defined once at the bottom so that any layer can raise or catch them
without importing the layer that usually raises them. Each derives from a built-in class the command line
catches (ValueError, KeyError, RuntimeError), so a user error prints one line, never a traceback."""

from __future__ import annotations


class ConfigError(ValueError):
  """A config key, value or type is wrong; raised before any work starts."""


class UnknownModelError(KeyError):
  """A model name that no module registered."""

  def __str__(self):
    return self.args[0]


class DataError(ValueError):
  """A dataset is missing, malformed or inconsistent."""


class ArtifactError(DataError):
  """A run's artifact (semantic-ID table, item embeddings, CF tables, added items: `genrec.artifacts`) is
  missing, damaged, or does not fit the data or model it is read for."""


class CheckpointError(RuntimeError):
  """A folder is not a run, or a checkpoint in it cannot be read."""


class MissingStageError(ConfigError):
  """A run depends on a stage (a tokenizer, an item encoder, a CF model) that is not where it was looked for;
  only `genrec train` builds stages, evaluation and loading never do."""


class LockedError(RuntimeError):
  """Another live process holds a run or stage folder's lock (`genrec.locks`)."""
