"""Registered models. Importing this package registers every built-in model."""
from genrec.models import bert4rec, contentrec, hstu, llmrec, mf, mmenc, sasrec, semantic_ids, tiger  # noqa: F401
from genrec.models.registry import list_models, register
