"""Text tower: a BERT encoder that imports Hugging Face checkpoints, and a cached catalogue encoder."""

from genrec.models.text.bert import Bert, BertConfig
from genrec.models.text.cache import EmbeddingCache
from genrec.models.text.encoder import TextEncoder
from genrec.models.text.hf_import import CheckpointError, bert_from_tensors, load_bert, load_config

__all__ = [
  "Bert",
  "BertConfig",
  "CheckpointError",
  "EmbeddingCache",
  "TextEncoder",
  "bert_from_tensors",
  "load_bert",
  "load_config",
]
