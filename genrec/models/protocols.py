"""The written contracts between tasks and models: what a task calls on a model, and on its config.

A model is any `nnx.Module` built from a frozen dataclass config; which protocols it must provide depends on the
task its config names (`cfg.model.task`). Every task lists its protocols (`Task.requires`) and the trainer checks
them before building anything, so a missing method is one error naming it, not an AttributeError mid-training.
Optional capabilities (`Scorer` for exact ranks, `GenerativeRetriever` for the invalid-item rate) are asked for
with `provides`. Batches are dicts of arrays; their keys are each task's (see the task modules).
"""

from __future__ import annotations

from typing import Any, Protocol

from genrec.errors import ConfigError


# ---- models -------------------------------------------------------------------------------------------------
class Trainable(Protocol):
  """Every trained model: the scalar loss of a batch and metrics to log (scalars)."""

  def loss(self, batch) -> tuple[Any, dict[str, Any]]: ...


class PartlyTrainable(Protocol):
  """Models that train a subset of their parameters (LoRA adapters over a frozen LLM): the classmethod
  `trainable(model_cfg)` returns the nnx filter of what the optimizer updates; the other parameters are frozen
  state (sharded and checkpointed, never differentiated)."""

  def trainable(self, cfg) -> Any: ...


class Recommender(Protocol):
  """Next-item models: top-k item ids [B, k] and their scores [B, k] after each history, never an item of
  `batch["seen"]` nor the padding id 0."""

  def recommend(self, batch, k: int) -> tuple[Any, Any]: ...


class Scorer(Protocol):
  """Next-item models that score the whole catalogue: float [B, N+1] (column 0 = padding). Evaluated with exact
  ranks under every candidate protocol; a Recommender without it is ranked up to k (all_minus_seen only)."""

  def score(self, batch) -> Any: ...


class GenerativeRetriever(Protocol):
  """Generative retrievers report how often unconstrained decoding invents items that do not exist."""

  def invalid_rate(self, batch, k: int) -> Any: ...


class SemanticIDRetriever(Recommender, Protocol):
  """Retrievers over semantic IDs (TIGER). `set_item_codes` loads the tokenizer's item -> code table [N+1, C]
  (row 0 padding) and which items training saw (`trained`, bool [N+1]; the others are new items) into the
  model's non-trainable state; the model keeps them as `item_codes` and `trained` (checkpointed, read by
  `genrec add-items` and `genrec export-ids`)."""

  def set_item_codes(self, codes, trained=None) -> None: ...


class ContentRetriever(Recommender, Protocol):
  """Retrievers over frozen item content vectors (ContentRec): `set_item_content` loads the table [N+1, D]
  and `trained`, kept as `content` and `trained` (new items are scored by content alone)."""

  def set_item_content(self, content, trained=None) -> None: ...


class ItemEncoder(Protocol):
  """Item encoders (semantic-ID tokenizers: codes [B, L]; multimodal encoders: embeddings [B, D])."""

  def encode(self, batch) -> Any: ...


class CodebookInit(Protocol):
  """Tokenizers that start from k-means over the whole catalogue (called once, before step 1)."""

  def init_codebooks(self, x_NxD, key) -> Any: ...


class Predictor(Protocol):
  """Pointwise models: P(positive) [B] for (user, item) examples."""

  def predict(self, batch) -> Any: ...


class CFExporter(Protocol):
  """CF models whose user [U, D] and item [N+1, D] tables feed LLM-CF models (the run artifact "cf")."""

  def user_embeddings(self) -> Any: ...

  def item_embeddings(self) -> Any: ...


# ---- configs ------------------------------------------------------------------------------------------------
class Resolvable(Protocol):
  """A config with sizes that follow the data: `resolve(view, data_cfg)` returns it with them filled (the
  task's `view` says what it sees: the dataset, an item table, ...)."""

  def resolve(self, view, data_cfg) -> Any: ...


class SemanticIDConfig(Protocol):
  """A retriever config over semantic IDs: `tokenizer` (MODEL:PRESET of the tokenizer stage) and its
  `tokenizer_overrides`; `semantic_ids_version`, the table it was trained on (pinned: a mismatch is an error);
  `with_semantic_ids(table, version)` sizes the code vocabulary from the table."""

  tokenizer: str
  tokenizer_overrides: tuple[str, ...]
  semantic_ids_version: str

  def with_semantic_ids(self, table_NxC, version: str) -> Any: ...


class ContentConfig(Protocol):
  """A retriever config over item content: `with_item_content(table)` sizes the content width."""

  def with_item_content(self, table_NxD) -> Any: ...


class PromptedConfig(Protocol):
  """An LLM-CF config (task "prompted"): the LLM (`llm_path`: a HF folder, or "" for a random `llm`), the
  prompt `template` and its limits, the answer words, and whether CF tokens take projected CF embeddings
  (`uses_cf`: then `cf_run`, or the `cf_stage` preset with `cf_stage_overrides`, gives them), with the
  hybrid-token curriculum `curriculum_steps` (0: always hybrid)."""

  llm_path: str
  llm: Any
  template: str
  max_prompt_len: int
  max_title_tokens: int
  pad_token: str
  bos_token: str
  answer_words: tuple[str, ...]
  uses_cf: bool
  curriculum_steps: int


# ---- checks -------------------------------------------------------------------------------------------------
def members(proto: type) -> list[str]:
  """The public names a protocol (and the protocols it extends) declares."""
  names: list[str] = []
  for cls in reversed(proto.__mro__):
    if cls in (object, Protocol) or not getattr(cls, "_is_protocol", False):
      continue
    own = [n for n in vars(cls) if not n.startswith("_")] + list(getattr(cls, "__annotations__", {}))
    names += [n for n in own if n not in names]
  return names


def missing(obj, proto: type) -> list[str]:
  """What `obj` (an instance, or a class for its methods) lacks of `proto`."""
  return [n for n in members(proto) if not hasattr(obj, n)]


def provides(obj, proto: type) -> bool:
  return not missing(obj, proto)


def require(obj, protos, what: str) -> None:
  """A ConfigError naming every missing member, when `obj` lacks one of `protos`."""
  gaps = [(p, missing(obj, p)) for p in protos]
  gaps = [(p, names) for p, names in gaps if names]
  if gaps:
    name = obj.__name__ if isinstance(obj, type) else type(obj).__name__
    detail = "; ".join(
      f"{p.__name__} ({(p.__doc__ or '').split('.')[0].strip()}): {', '.join(names)}" for p, names in gaps
    )
    raise ConfigError(f"{what}: {name} does not provide what it needs — {detail}")
