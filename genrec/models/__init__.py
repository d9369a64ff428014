"""Registered models. Importing this package registers every built-in model."""
from genrec.models import sasrec  # noqa: F401
from genrec.models.registry import list_models, register
