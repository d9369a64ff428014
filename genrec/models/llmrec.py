"""LLM-CF click models: TALLRec (Bao et al., 2023), CoLLM (Zhang et al., 2023) and LLaRA-style hybrid tokens
(Liao et al., 2024) — a frozen decoder LLM with LoRA adapters that answers "Yes"/"No" to a prompt.

One model, three prompt templates (genrec/models/llm/prompts.py; token ids are built on the host by the
pointwise task, never in the model):
  tallrec  text only: titles of the user's liked history and of the target.
  collm    the same text plus placeholders [U] (user), [I] (each history item), [T] (target) whose token
           embeddings are REPLACED by projector(CF embedding) before the transformer runs; the CF embeddings
           are an MF run's user/item tables (`cf_run`, or the `cf_stage` the trainer runs first), frozen.
  llara    each item = its title + one hybrid token [I]/[T] = projector(CF item embedding); no user token;
           training follows a curriculum from text-only to hybrid prompts (`curriculum_steps`).

Answer: h = the final hidden state at the prompt's last real token ("Answer:"); l_yes, l_no = the LM head's
next-token logits at the vocabulary ids of " Yes" and " No" (`answer_ids`). predict = P(yes) = softmax over
the two = sigmoid(l_yes - l_no); loss = binary cross-entropy of (l_yes - l_no) against label (rating > 3).

Trainable (`trainable(cfg)`, the trainer optimizes only these): TALLRec the LoRA adapters; CoLLM
stage="joint" adapters + projector, "text" (paper's stage 1: text-only prompts) adapters, "cf" (stage 2,
warm-started from a "text" run with `--init-from`) the projector, adapters frozen; LLaRA adapters + projector.
The LLM's own weights are never trained: random (`llm_path=""`) or a Hugging Face folder the task streams in.
Batches: {"prompt": int32 [B, L], "prompt_valid": bool [B, L], "cf_slot", "cf_index": int32 [B, L] (slot
templates), "label": float32 [B] (training), "user", "item", "history" (unused here)}.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from genrec.config import ConfigError
from genrec.models import layers
from genrec.models.layers.lora import LoRAConfig, LoRAParam, apply_lora
from genrec.models.llm.model import DecoderLM, LLMConfig
from genrec.models.llm.prompts import PAD, SLOT_ITEM, SLOT_USER
from genrec.models.mf import binary_cross_entropy
from genrec.registry import register

STAGES = ("joint", "text", "cf")


@dataclasses.dataclass(frozen=True)
class TALLRecConfig:
  llm: LLMConfig = LLMConfig()  # with llm_path: its config.json; else vocab_size = the prompt tokenizer's
  llm_path: str = ""  # "" = random init; else a HF Llama/Qwen2 folder (config.json, *.safetensors,
  #                                    tokenizer.json), streamed in by the task, frozen
  lora: LoRAConfig = LoRAConfig()
  max_prompt_len: int = 128  # the context window a prompt must fit (oldest history items dropped first)
  max_title_tokens: int = 16  # each title is cut to this many tokens (every item alike)
  answer_words: tuple[str, ...] = ("Yes", "No")  # the positive and the negative answer
  pad_token: str = PAD  # must be in the tokenizer (Llama 3: <|end_of_text|>)
  bos_token: str = ""  # prepended when set (Llama: <s> / <|begin_of_text|>)
  answer_ids: tuple[int, ...] = (-1, -1)  # vocabulary ids of " Yes", " No": set from the tokenizer
  num_users: int = 0  # 0: from the dataset
  num_items: int = 0

  curriculum_steps: int = 0  # P(hybrid item tokens) = min(1, step / curriculum_steps); 0: always hybrid
  #                                    (templates with hybrid tokens: llara)
  task: str = "prompted"  # genrec.families.llm_cf.prompted

  prompt = "tallrec"  # the template the pointwise task builds (genrec.models.llm.prompts)

  def __post_init__(self):
    if len(self.answer_words) != 2 or len(self.answer_ids) != 2:
      raise ConfigError(
        f"model.answer_words {self.answer_words} / answer_ids {self.answer_ids}: need exactly "
        "two (the positive answer, then the negative)"
      )

  @property
  def uses_cf(self) -> bool:
    return False

  @property
  def template(self) -> str:
    return self.prompt

  def resolve(self, view, data_cfg):
    """Sizes from the data, the LLM shape from llm_path (or the tokenizer's vocabulary), answer ids from the
    tokenizer. `view` may lack the prompt fields (then they keep their values)."""
    del data_cfg
    llm = getattr(view, "llm", None) or self.llm
    if not self.llm_path and getattr(view, "vocab_size", 0):
      llm = dataclasses.replace(llm, vocab_size=view.vocab_size)
    if self.max_prompt_len > llm.max_position:
      raise ConfigError(
        f"model.max_prompt_len={self.max_prompt_len} exceeds the LLM's context of "
        f"{llm.max_position} positions (llm.max_position)"
      )
    fields = dict(
      llm=llm,
      num_users=view.num_users,
      num_items=view.num_items,
      answer_ids=tuple(getattr(view, "answer_ids", self.answer_ids)),
    )
    if self.uses_cf and getattr(view, "cf_dim", 0):
      fields["cf_dim"] = view.cf_dim
    return dataclasses.replace(self, **fields)


@dataclasses.dataclass(frozen=True)
class CoLLMConfig(TALLRecConfig):
  cf_run: str = ""  # a run folder with a CF artifact (RUN/cf/); "" = train/reuse cf_stage first
  cf_stage: str = "mf:ml100k"  # the CF model preset run on this config's data when cf_run is ""
  cf_stage_overrides: tuple[str, ...] = ()
  cf_dim: int = 64  # set from the CF artifact
  projector_hidden: int = 0  # the CF → LLM MLP's hidden width; 0: the LLM's hidden size
  stage: str = "joint"  # joint | text (stage 1: LoRA, text-only prompts) | cf (stage 2: projector)

  prompt = "collm"
  # Stage 2 warm-starts from a stage-1 run (--init-from); the CF tables always follow this run's CF source.
  warm_start_free = ("stage", "cf_run", "cf_stage", "cf_stage_overrides")

  def __post_init__(self):
    super().__post_init__()
    if self.stage not in STAGES:
      raise ConfigError(f"model.stage={self.stage!r} is not one of {STAGES}")

  @property
  def uses_cf(self) -> bool:
    return True

  @property
  def template(self) -> str:
    return "tallrec" if self.stage == "text" else self.prompt


@dataclasses.dataclass(frozen=True)
class LLaRAConfig(CoLLMConfig):
  prompt = "llara"


class CFTable(nnx.Variable):
  """Frozen CF embeddings read from a CF run (never trained, checkpointed with the model)."""


class LLMRec(nnx.Module):
  def __init__(self, cfg: TALLRecConfig, *, rngs: nnx.Rngs):
    if cfg.num_users <= 0 or cfg.num_items <= 0:
      raise ValueError(
        f"{type(cfg).__name__} needs num_users and num_items > 0 (got {cfg.num_users}, "
        f"{cfg.num_items}); call cfg.resolve(view, data_cfg) or set them"
      )
    self.cfg = cfg
    self.lm = DecoderLM(cfg.llm, rngs=rngs)
    apply_lora(self.lm, cfg.lora, rngs=rngs)
    if not cfg.uses_cf:
      self.projector = None
      return
    d, width = cfg.llm.hidden, cfg.projector_hidden or cfg.llm.hidden
    self.cf_users = CFTable(jnp.zeros((cfg.num_users, cfg.cf_dim)), out_sharding=(None, None), eager_sharding=False)
    self.cf_items = CFTable(
      jnp.zeros((cfg.num_items + 1, cfg.cf_dim)), out_sharding=("item", None), eager_sharding=False
    )
    self.projector = nnx.Sequential(
      layers.dense(cfg.cf_dim, width, (None, "mlp"), rngs=rngs),
      jax.nn.gelu,
      layers.dense(width, d, ("mlp", "embed"), rngs=rngs),
    )

  @staticmethod
  def trainable(cfg: TALLRecConfig):
    """The nnx filter of what the optimizer updates (see the module docstring)."""
    projector = nnx.All(nnx.Param, nnx.PathContains("projector"))
    stage = cfg.stage if cfg.uses_cf else "text"
    return {"joint": nnx.Any(LoRAParam, projector), "text": LoRAParam, "cf": projector}[stage]

  def inputs(self, batch) -> jax.Array:
    """Token embeddings [B, L, D] with every placeholder replaced by its projected CF embedding."""
    x_BxLxD = self.lm.embed(batch["prompt"])
    if self.projector is None or "cf_slot" not in batch:
      return x_BxLxD
    slot_BxL, index_BxL = batch["cf_slot"], batch["cf_index"]
    users_BxLxC = jnp.take(self.cf_users[...], jnp.where(slot_BxL == SLOT_USER, index_BxL, 0), axis=0)
    items_BxLxC = jnp.take(self.cf_items[...], jnp.where(slot_BxL == SLOT_ITEM, index_BxL, 0), axis=0)
    cf_BxLxC = jnp.where((slot_BxL == SLOT_USER)[..., None], users_BxLxC, items_BxLxC)
    projected_BxLxD = self.projector(cf_BxLxC).astype(x_BxLxD.dtype)
    return jnp.where((slot_BxL > 0)[..., None], projected_BxLxD, x_BxLxD)

  def answer_margin(self, batch) -> jax.Array:
    """l_yes - l_no [B] (float32) at the next-token position after the last real prompt token."""
    valid_BxL = batch["prompt_valid"].astype(bool)
    h_BxLxD = self.lm.hidden(self.inputs(batch), valid_BxL)
    last_B = valid_BxL.shape[1] - 1 - jnp.argmax(valid_BxL[:, ::-1], axis=1)
    h_Bx1xD = jnp.take_along_axis(h_BxLxD, last_B[:, None, None], axis=1)
    logits_BxV = self.lm.logits(h_Bx1xD)[:, 0].astype(jnp.float32)
    yes, no = self.cfg.answer_ids
    return logits_BxV[:, yes] - logits_BxV[:, no]

  def predict(self, batch) -> jax.Array:
    """P(yes) float32 [B]."""
    return jax.nn.sigmoid(self.answer_margin(batch))

  def loss(self, batch):
    margin_B = self.answer_margin(batch)
    labels_B = batch["label"].astype(jnp.float32)
    bce = binary_cross_entropy(margin_B, labels_B).mean()
    return bce, {"bce": bce, "accuracy": jnp.mean(((margin_B > 0) == (labels_B > 0.5)).astype(jnp.float32))}


@register("tallrec", TALLRecConfig)
class TALLRec(LLMRec):
  pass


@register("collm", CoLLMConfig)
class CoLLM(LLMRec):
  pass


@register("llara", LLaRAConfig)
class LLaRA(LLMRec):
  pass
