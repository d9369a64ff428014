"""The task "prompted": the pointwise task (genrec.families.llm_cf.pointwise) for LLM-CF models (TALLRec, CoLLM,
LLaRA-style), whose examples are prompt token ids built on the host (genrec.models.llm.prompts) from the template
their config names (protocols of the config: `PromptedConfig`).

`PromptedExamples(cfg, data, points, stages)`, made once per run by the task:
  - the tokenizer: `model.llm_path`'s tokenizer.json, or a word-level one over the dataset's titles;
  - the CF embeddings (CoLLM, LLaRA; `model.uses_cf`): the artifact "cf" of the run folder resolved for the role
    "cf" — `model.cf_run`, or the `model.cf_stage` run genrec.pipeline trains (or reuses) on this run's data;
    read only when training starts (sizes, then the tables into the model's state);
  - `view`: what the model config's resolve() reads (sizes, vocabulary, answer ids, CF width, LLM shape);
  - `train(ds, ...)`: training batches with prompts; LLaRA's curriculum masks the hybrid tokens of a row with
    probability 1 - min(1, step / curriculum_steps), drawn from (data.seed, step) — the same on any
    number of processes; `split(name)`: eval arrays with prompts (hybrid tokens always on);
  - `prepare(placed)`: streams the HF weights onto their shardings (one tensor at a time) and the CF tables;
  - `protocol()`: the template, the window and how many examples lost history items to it.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import numpy as np
from flax import nnx

from genrec.config import ConfigError, ExperimentConfig
from genrec.families.llm_cf.cf import CF, CFArtifactError, load_cf_artifact
from genrec.families.llm_cf.pointwise import PointwiseTask
from genrec.models import protocols
from genrec.models.llm import load_config, load_llm, load_tokenizer
from genrec.models.llm.model import LLMConfig
from genrec.models.llm.prompts import TEXT, PromptBuilder, word_tokenizer
from genrec.train.tasks import StageRef, register_task


@dataclasses.dataclass(frozen=True)
class PromptView:
  """What an LLM-CF config's resolve() sees."""

  name: str
  num_users: int
  num_items: int
  vocab_size: int
  answer_ids: tuple[int, int]
  cf_dim: int
  llm: LLMConfig | None


def titles(data) -> list[str]:
  """Item titles by id; an item without one is called "item <raw id>"."""
  return [""] + [t.strip() or f"item {data.item_raw[i]}" for i, t in enumerate(data.item_titles) if i > 0]


class PromptedExamples:
  def __init__(self, cfg, data, points, stages):
    model = cfg.model
    self.cfg, self.points, self.stages = cfg, points, stages
    item_titles = titles(data)
    self.llm = None
    if model.llm_path:
      self.llm = load_config(model.llm_path)
      tokenizer, source = load_tokenizer(model.llm_path), f"{model.llm_path}/tokenizer.json"
    else:
      tokenizer, source = word_tokenizer(item_titles), "the built-in word tokenizer"
    self.builder = PromptBuilder(
      tokenizer,
      item_titles,
      template=model.template,
      max_len=model.max_prompt_len,
      max_title_tokens=model.max_title_tokens,
      pad_token=model.pad_token,
      answer_words=model.answer_words,
      bos_token=model.bos_token,
      source=source,
    )
    if self.llm is not None and self.builder.vocab_size > self.llm.vocab_size:
      raise ConfigError(
        f"{source} has {self.builder.vocab_size} tokens but the LLM in {model.llm_path} embeds "
        f"{self.llm.vocab_size}: they are not from the same model"
      )
    self.kept = {
      s: self.builder.kept(a["item"], a["history"]) for s in ("train", "valid", "test") for a in [points.split(s)]
    }
    self._splits = {}

  @functools.cached_property
  def cf(self) -> tuple[np.ndarray, np.ndarray] | None:
    """The CF user and item tables of the run resolved for the role "cf" (None without CF tokens)."""
    if not self.cfg.model.uses_cf:
      return None
    run = self.stages.folder(CF)
    try:
      users, items, meta = load_cf_artifact(run, self.points)
    except CFArtifactError as e:
      raise CFArtifactError(f"{self.cfg.model_name} reads its CF embeddings from {run}: {e}") from None
    self.cf_source = {"run": str(run), "model": meta["model"], "dim": meta["dim"]}
    return users, items

  @property
  def view(self) -> PromptView:
    p = self.points
    return PromptView(
      p.name,
      p.num_users,
      p.num_items,
      self.builder.vocab_size,
      tuple(self.builder.answer_ids),
      0 if self.cf is None else self.cf[0].shape[1],
      self.llm,
    )

  # -- batches ----------------------------------------------------------------------------------------------
  def hybrid_probability(self, step: int) -> float:
    steps = self.cfg.model.curriculum_steps
    return 1.0 if steps <= 0 else min(1.0, step / steps)

  def train(self, ds, *, process_index: int, process_count: int):
    """`ds[step]` (pointwise_train's batches) with prompts added."""
    global_batch, seed = self.cfg.trainer.batch_size, self.cfg.data.seed
    curriculum = self.cfg.model.curriculum_steps > 0
    local = global_batch // process_count

    def add(step, batch):
      hybrid = None
      if curriculum:
        draws = np.random.default_rng((seed, step, 11)).random(global_batch)[process_index * local :][:local]
        hybrid = draws < self.hybrid_probability(step)
      return {**batch, **self.builder.build(batch["user"], batch["item"], batch["history"], hybrid)}

    return ds.map_with_index(add)

  def split(self, name: str, arrays: dict) -> dict:
    """`arrays` (one split's examples) with prompts; built once per split."""
    if name not in self._splits:
      self._splits[name] = {**arrays, **self.builder.build(arrays["user"], arrays["item"], arrays["history"])}
    return self._splits[name]

  # -- state ------------------------------------------------------------------------------------------------
  def prepare(self, placed) -> None:
    """Puts the HF weights (llm_path) and the CF tables into the placed state, each on its sharding."""
    model = self.cfg.model
    if not model.llm_path and self.cf is None:
      return
    states = {"params": dict(nnx.to_flat_state(placed.params)), "other": dict(nnx.to_flat_state(placed.other))}
    shardings = {**dict(nnx.to_flat_state(placed.param_shardings)), **dict(nnx.to_flat_state(placed.other_shardings))}
    placed.params = placed.other = None  # old buffers go as their replacements arrive

    def put(path, array):
      flat = states["params"] if path in states["params"] else states["other"]
      value = jax.device_put(array, shardings[path].get_value())
      flat[path] = flat[path].replace(value)
      return value

    if model.llm_path:
      load_llm(model.llm_path, config=model.llm, place=lambda path, array: put(("lm", *path), array))
    if self.cf is not None:
      put(("cf_users",), self.cf[0])
      put(("cf_items",), self.cf[1])
    placed.params = nnx.from_flat_state(list(states["params"].items()))
    placed.other = nnx.from_flat_state(list(states["other"].items()))

  def protocol(self) -> dict:
    model, b = self.cfg.model, self.builder
    counts = {s: int((k < (self.points.split(s)["history"] > 0).sum(1)).sum()) for s, k in self.kept.items()}
    out = {
      "template": model.template,
      "text": TEXT[model.template],
      "max_prompt_len": b.max_len,
      "max_title_tokens": model.max_title_tokens,
      "tokenizer": model.llm_path or "built-in word-level",
      "vocab": b.vocab_size,
      "answer": f"P(yes) = sigmoid(logit[{model.answer_words[0]!r}] - "
      f"logit[{model.answer_words[1]!r}]) after the last prompt token",
      "truncated_examples": counts,
      "history_items_dropped": {
        s: int(((self.points.split(s)["history"] > 0).sum(1) - k).sum()) for s, k in self.kept.items()
      },
    }
    if model.uses_cf and CF in self.stages and self.cf is not None:  # training, or its stage at hand
      out["cf"] = self.cf_source
    if model.curriculum_steps:
      out["curriculum"] = f"P(hybrid tokens) = min(1, step / {model.curriculum_steps}) in training, 1 in eval"
    return out


@register_task("prompted")
class PromptedTask(PointwiseTask):
  """The pointwise task with prompts: see the module docstring."""

  config_requires = (protocols.PromptedConfig,)
  exports = ()

  @classmethod
  def stage_refs(cls, cfg: ExperimentConfig):
    model = cfg.model
    if not model.uses_cf:
      return {}
    if model.cf_run:
      return {CF: StageRef(folder=model.cf_run, artifact=CF, setting="model.cf_run")}
    return {CF: StageRef(model.cf_stage, tuple(model.cf_stage_overrides), artifact=CF, setting="model.cf_stage")}

  def __init__(self, cfg: ExperimentConfig, data, stages=None):
    super().__init__(cfg, data, stages)
    self.prompts = PromptedExamples(cfg, data, self.points, self.stages)

  @property
  def view(self) -> PromptView:
    return self.prompts.view

  def train_dataset(self, *, process_index: int, process_count: int):
    ds = super().train_dataset(process_index=process_index, process_count=process_count)
    return self.prompts.train(ds, process_index=process_index, process_count=process_count)

  def inputs(self, name: str, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return self.prompts.split(name, arrays)

  def prepare(self, placed, key) -> None:
    del key
    self.prompts.prepare(placed)

  def protocol(self) -> dict:
    return {**super().protocol(), "prompt": self.prompts.protocol()}
