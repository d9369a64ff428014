"""Decoder-only LLM backbone (Llama / Qwen2) with Hugging Face import and KV-cached greedy generation."""

from genrec.models.llm.hf_import import (
  abstract_lm,
  check_special_tokens,
  checkpoint_files,
  hf_name,
  load_config,
  load_llm,
  load_tokenizer,
)
from genrec.models.llm.model import DecoderLM, KVCache, LLMConfig, generate

__all__ = [
  "DecoderLM",
  "KVCache",
  "LLMConfig",
  "abstract_lm",
  "check_special_tokens",
  "checkpoint_files",
  "generate",
  "hf_name",
  "load_config",
  "load_llm",
  "load_tokenizer",
]
