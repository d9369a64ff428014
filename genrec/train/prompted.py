"""The pointwise task's prompt hook: LLM-CF models (their config names a template in `model.prompt`) see
each labelled example as prompt token ids, built on the host (genrec.models.llm.prompts).

`PromptedExamples(cfg, data, points)`, made once per run by the pointwise task:
  - the tokenizer: `model.llm_path`'s tokenizer.json, or a word-level one over the dataset's titles;
  - the CF embeddings (CoLLM, LLaRA): the artifact of `model.cf_run`, or of the `model.cf_stage` run that
    `stages.run_stage` trains (or reuses, keyed by its config) on this run's data;
  - `view`: what the model config's resolve() reads (sizes, vocabulary, answer ids, CF width, LLM shape);
  - `train(ds, ...)`: training batches with prompts; LLaRA's curriculum masks the hybrid tokens of a row with
    probability 1 - min(1, step / curriculum_steps), drawn from (data.seed, step) — the same on any
    number of processes; `split(name)`: eval arrays with prompts (hybrid tokens always on);
  - `prepare(placed)`: streams the HF weights onto their shardings (one tensor at a time) and the CF tables;
  - `protocol()`: the template, the window and how many examples lost history items to it.
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
from flax import nnx

from genrec.config import ConfigError
from genrec.models.cf_artifact import CFArtifactError, load_cf_artifact
from genrec.models.llm import load_config, load_llm, load_tokenizer
from genrec.models.llm.model import LLMConfig
from genrec.models.llm.prompts import TEXT, PromptBuilder, word_tokenizer
from genrec.train import stages


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
  def __init__(self, cfg, data, points):
    model = cfg.model
    self.cfg, self.points = cfg, points
    item_titles = titles(data)
    llm = None
    if model.llm_path:
      llm = load_config(model.llm_path)
      tokenizer, source = load_tokenizer(model.llm_path), f"{model.llm_path}/tokenizer.json"
    else:
      tokenizer, source = word_tokenizer(item_titles), "the built-in word tokenizer"
    self.builder = PromptBuilder(tokenizer, item_titles, template=model.template, max_len=model.max_prompt_len,
                                 max_title_tokens=model.max_title_tokens, pad_token=model.pad_token,
                                 answer_words=model.answer_words, bos_token=model.bos_token, source=source)
    if llm is not None and self.builder.vocab_size > llm.vocab_size:
      raise ConfigError(f"{source} has {self.builder.vocab_size} tokens but the LLM in {model.llm_path} embeds "
                        f"{llm.vocab_size}: they are not from the same model")
    self.cf = self._cf_tables(cfg, data) if model.uses_cf else None
    self.view = PromptView(points.name, points.num_users, points.num_items, self.builder.vocab_size,
                           tuple(self.builder.answer_ids), 0 if self.cf is None else self.cf[0].shape[1], llm)
    self.kept = {s: self.builder.kept(a["item"], a["history"]) for s in ("train", "valid", "test")
                 for a in [points.split(s)]}
    self._splits = {}

  def _cf_tables(self, cfg, data):
    model = cfg.model
    run = model.cf_run
    if not run:
      run = stages.run_stage(stages.stage_config(model.cf_stage, model.cf_stage_overrides, cfg.data), data=data,
                             progress=cfg.trainer.progress)
    try:
      users, items, meta = load_cf_artifact(run, self.points)
    except CFArtifactError as e:
      raise CFArtifactError(f"{cfg.model_name} reads its CF embeddings from {run}: {e}") from None
    self.cf_source = {"run": str(run), "model": meta["model"], "dim": meta["dim"]}
    return users, items

  # -- batches ----------------------------------------------------------------------------------------------
  def hybrid_probability(self, step: int) -> float:
    steps = getattr(self.cfg.model, "curriculum_steps", 0)
    return 1.0 if steps <= 0 else min(1.0, step / steps)

  def train(self, ds, *, process_index: int, process_count: int):
    """`ds[step]` (pointwise_train's batches) with prompts added."""
    global_batch, seed = self.cfg.trainer.batch_size, self.cfg.data.seed
    curriculum = getattr(self.cfg.model, "curriculum_steps", 0) > 0
    local = global_batch // process_count

    def add(step, batch):
      hybrid = None
      if curriculum:
        draws = np.random.default_rng((seed, step, 11)).random(global_batch)[process_index * local:][:local]
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
    placed.params = placed.other = None          # old buffers go as their replacements arrive

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
    out = {"template": model.template, "text": TEXT[model.template], "max_prompt_len": b.max_len,
           "max_title_tokens": model.max_title_tokens, "tokenizer": model.llm_path or "built-in word-level",
           "vocab": b.vocab_size, "answer": f"P(yes) = sigmoid(logit[{model.answer_words[0]!r}] - "
                                            f"logit[{model.answer_words[1]!r}]) after the last prompt token",
           "truncated_examples": counts,
           "history_items_dropped": {s: int(((self.points.split(s)["history"] > 0).sum(1) - k).sum())
                                     for s, k in self.kept.items()}}
    if self.cf is not None:
      out["cf"] = self.cf_source
    if getattr(model, "curriculum_steps", 0):
      out["curriculum"] = f"P(hybrid tokens) = min(1, step / {model.curriculum_steps}) in training, 1 in eval"
    return out
