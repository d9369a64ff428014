"""Configs are data: frozen dataclasses, JSON round-trip, dotted-key overrides.

`ExperimentConfig` bundles a model config with the data, trainer, mesh and eval sections. The model section
is polymorphic; its registry key travels beside it (`model_name`) so a JSON file rebuilds the right class.
Every decoder validates keys and types at the boundary and names the valid keys when something is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import types
import typing
from typing import Any

from genrec.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Where interactions come from and how they become sequences.

  dataset: "ml-100k", "ml-1m", "ml-20m" (RecBole atomic files or the TFDS builders), "synthetic", or
    "atomic:DIR/NAME" for any RecBole atomic-file dataset (DIR/NAME.inter, optional .item/.user).
  data_dir: where prepared/downloaded data is kept ("" → ~/.cache/genrec).
  cold_items: the cold-start protocol (genrec.data.cold): round(cold_items * num_items) item ids, drawn by
    `seed`, are held out of training. Rule: every interaction with a held-out item is removed from each user's
    training part (all positions before the last two, so no training input or target is a held-out item); the
    valid and test interactions are kept as they are, so a valid/test target may be held out (such cases form
    the "cold" group of the evaluation, the others "warm") and a held-out valid item stays in the test history.
  """

  dataset: str = "ml-100k"
  data_dir: str = ""
  min_rating: float = 0.0  # implicit feedback: keep interactions with rating >= min_rating
  kcore: int = 0  # iterative k-core on users and items (0 = off)
  min_user_interactions: int = 3  # leave-one-out needs >= 3; shorter users are dropped with a count
  max_len: int = 50  # history length fed to sequence models
  time_fraction: float = 1.0  # keep the earliest fraction of interactions by time (an older snapshot)
  train_window: str = "last"  # last | random: which max_len+1 slice of a user's training items a batch row holds
  item_embeddings: str = "text:minilm"  # text:minilm | text:HF_DIR | npy:FILE ([num_items, D]) | random:D (tests)
  #   | run:MODEL:PRESET (an item encoder stage, e.g. run:mmenc:ml100k, trained or reused) | run:DIR (its run folder)
  empty_item_text: str = "error"  # error | placeholder ("item <id>") for catalogue items with no text
  cold_items: float = 0.0  # fraction of the catalogue held out of training (cold start); 0 = off
  # synthetic generator (dataset="synthetic")
  synthetic_users: int = 256
  synthetic_items: int = 64
  synthetic_length: int = 20
  seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainerConfig:
  steps: int = 1000
  batch_size: int = 128  # global batch, split over the data-parallel mesh axes
  grad_accum: int = 1  # micro-batches per optimizer step (batch_size must divide evenly)
  learning_rate: float = 1e-3
  warmup_steps: int = 100
  schedule: str = "cosine"  # cosine | constant | inverse_sqrt
  min_lr_ratio: float = 0.0
  weight_decay: float = 0.0
  b1: float = 0.9
  b2: float = 0.98
  clip_norm: float = 1.0  # 0 = no clipping
  compute_dtype: str = "float32"  # float32 | bfloat16 (parameters stay float32)
  eval_every: int = 200
  log_every: int = 50
  checkpoint_every: int = 500
  keep_checkpoints: int = 2
  best_metric: str = "ndcg@10"  # validation metric that picks the kept model
  best_mode: str = "max"  # max | min: whether a larger best_metric is better
  patience: int = 0  # stop after this many evals without improvement (0 = never)
  seed: int = 0
  progress: bool = True


DEFAULT_RULES = (
  ("batch", "data", "fsdp"),
  ("item", "tensor"),
  ("vocab", "tensor"),
  ("embed", "fsdp"),
  ("mlp", "tensor"),
  ("heads", "tensor"),
  ("kv",),
  ("codebook",),
)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
  """Device mesh ("data", "fsdp", "tensor"); -1 on one axis means "all remaining devices".

  rules: the logical-axis table, one row per logical name: (name, mesh axes...). A name with no mesh axes is
  replicated. A parameter dimension that the mesh axes do not divide stays replicated.
  """

  data: int = -1
  fsdp: int = 1
  tensor: int = 1
  rules: tuple[tuple[str, ...], ...] = DEFAULT_RULES


@dataclasses.dataclass(frozen=True)
class EvalConfig:
  """The evaluation protocol; printed with every result.

  candidates: "all_minus_seen" (rank the target among every item the user has not interacted with before),
    "all" (every item), or "sampled:N" (N sampled unseen negatives; only on request). Pointwise tasks rank
    only with "sampled:N" (HR@1 of the target among N + 1 candidates, genrec.families.llm_cf.pointwise).
  ranked_examples: pointwise ranking covers the first this many positive examples of a split (0 = all).
  split: "leave_one_out" (per user: last -> test, second last -> valid) or "temporal" (one cut by global time
    for everybody at `temporal_cuts`, fractions of all interactions in time order; genrec.data.splits). A task
    refuses a split it does not implement.
  """

  split: str = "leave_one_out"
  temporal_cuts: tuple[float, float] = (0.8, 0.9)
  candidates: str = "all_minus_seen"
  ks: tuple[int, ...] = (5, 10, 20)
  batch_size: int = 256
  group_by: tuple[str, ...] = ("gender", "age", "occupation")
  seed: int = 0
  ranked_examples: int = 200


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  model: Any
  model_name: str = ""
  preset: str = ""
  data: DataConfig = DataConfig()
  trainer: TrainerConfig = TrainerConfig()
  mesh: MeshConfig = MeshConfig()
  eval: EvalConfig = EvalConfig()


COMPUTE_DTYPES = ("float32", "bfloat16")


def check_values(cfg: ExperimentConfig) -> None:
  """Settings whose value is out of range, named with the range; run before any work starts (the trainer's
  check_settings). Every model setting whose name ends in "dropout" is a probability in [0, 1)."""
  t = cfg.trainer

  lr = t.learning_rate
  if not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
    raise ConfigError(f"trainer.learning_rate={lr!r} is out of range: must be a finite number > 0")
  if t.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(
      f"trainer.compute_dtype={t.compute_dtype!r} is out of range: must be one of {list(COMPUTE_DTYPES)}"
    )
  for key, value in (("trainer.warmup_steps", t.warmup_steps), ("trainer.patience", t.patience)):
    if value < 0:
      raise ConfigError(f"{key}={value!r} is out of range: must be >= 0 (0 turns it off)")
  if t.keep_checkpoints < 1:
    raise ConfigError(
      f"trainer.keep_checkpoints={t.keep_checkpoints!r} is out of range: must be >= 1 (the newest checkpoints kept)"
    )
  for key, value in _dropouts(cfg.model, "model"):
    if not 0.0 <= value < 1.0:
      raise ConfigError(f"{key}={value!r} is out of range: a dropout rate must be in [0, 1)")


def _dropouts(section, prefix: str):
  if not dataclasses.is_dataclass(section):
    return
  for f in dataclasses.fields(section):
    value = getattr(section, f.name)
    if dataclasses.is_dataclass(value):
      yield from _dropouts(value, f"{prefix}.{f.name}")
    elif f.name.endswith("dropout") and isinstance(value, (int, float)) and not isinstance(value, bool):
      yield f"{prefix}.{f.name}", value


# ---------------------------------------------------------------------------------------------------------
# JSON round trip


def to_dict(cfg) -> dict[str, Any]:
  out = {}
  for f in dataclasses.fields(cfg):
    v = getattr(cfg, f.name)
    if dataclasses.is_dataclass(v):
      v = to_dict(v)
    elif isinstance(v, tuple):
      v = list(v)
    out[f.name] = v
  return out


def flat(d: dict, prefix: str = "") -> dict[str, Any]:
  """A nested config dict as {"trainer.steps": 60, ...}."""
  out = {}
  for k, v in d.items():
    if isinstance(v, dict):
      out.update(flat(v, f"{prefix}{k}."))
    else:
      out[f"{prefix}{k}"] = v
  return out


def to_json(cfg) -> str:
  return json.dumps(to_dict(cfg), indent=2, sort_keys=True)


def _field_types(cls) -> dict[str, Any]:
  hints = typing.get_type_hints(cls)
  return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value, typ, where: str):
  """Checks `value` (decoded JSON or parsed text) against annotation `typ`; returns the typed value."""
  origin = typing.get_origin(typ)
  if typ is Any:
    return value
  if dataclasses.is_dataclass(typ):
    if not isinstance(value, dict):
      raise ConfigError(f"{where}: expected an object for {typ.__name__}, got {value!r}")
    return from_dict(typ, value, where)
  if origin in (typing.Union, types.UnionType):
    args = typing.get_args(typ)
    if value is None and type(None) in args:
      return None
    errors = []
    for a in args:
      if a is type(None):
        continue
      try:
        return _coerce(value, a, where)
      except ConfigError as e:
        errors.append(str(e))
    raise ConfigError(f"{where}: {value!r} does not fit {typ}")
  if origin is tuple:
    if not isinstance(value, (list, tuple)):
      raise ConfigError(f"{where}: expected a list, got {value!r}")
    args = typing.get_args(typ)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if len(args) != len(value):
      raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
    return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
  if typ is bool:
    if not isinstance(value, bool):
      raise ConfigError(f"{where}: expected true/false, got {value!r}")
    return value
  if typ is int:
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f"{where}: expected an integer, got {value!r}")
    return value
  if typ is float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise ConfigError(f"{where}: expected a number, got {value!r}")
    return float(value)
  if typ is str:
    if not isinstance(value, str):
      raise ConfigError(f"{where}: expected a string, got {value!r}")
    return value
  raise ConfigError(f"{where}: unsupported config type {typ}")


def from_dict(cls, d: dict[str, Any], where: str = "config"):
  """Builds dataclass `cls` from a dict, rejecting unknown keys and wrong types."""
  ftypes = _field_types(cls)
  if cls is ExperimentConfig:
    ftypes["model"] = _model_config_class(d)
  unknown = sorted(set(d) - set(ftypes))
  if unknown:
    raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(ftypes)}")
  kwargs = {k: _coerce(v, ftypes[k], "model" if k == "model" else f"{where}.{k}") for k, v in d.items()}
  if cls is ExperimentConfig:
    kwargs.setdefault("model", ftypes["model"]())
  try:
    return cls(**kwargs)
  except TypeError as e:
    raise ConfigError(f"{where}: {e}") from None


def _model_config_class(d: dict[str, Any]) -> type:
  """The polymorphic model section's class, named by the registry key stored beside it."""
  from genrec import registry  # local: the model config classes live in model modules (jax)

  name = d.get("model_name")
  if not isinstance(name, str) or not name:
    raise ConfigError("config: 'model_name' is missing; cannot tell which model this config is for")
  return registry.config_class(name)


def from_json(text: str, presets=None):
  """A config file: every key given, or a named preset (`"model_name"` and `"preset"`) that the file's keys
  override. A file that leaves keys out without naming a preset is refused: dataclass defaults are not a
  preset's (trainer.steps 1000, not the tiny preset's 60). `presets` ("model:preset" -> ExperimentConfig) finds
  the named preset; genrec.configs.from_json passes its own `get` (this module sits below the presets)."""
  try:
    d = json.loads(text)
  except json.JSONDecodeError as e:
    raise ConfigError(f"config JSON is malformed: {e}") from None
  if not isinstance(d, dict):
    raise ConfigError("config JSON must be an object")
  return from_dict(ExperimentConfig, _over_preset(d, presets))


def _missing_keys(cls, d: dict, prefix: str = "") -> list[str]:
  out = []
  for name, typ in _field_types(cls).items():
    if name not in d:
      out.append(prefix + name)
    elif dataclasses.is_dataclass(typ) and isinstance(d[name], dict):
      out += _missing_keys(typ, d[name], f"{prefix}{name}.")
  return out


def _over_preset(d: dict, presets) -> dict:
  """`d` merged over the preset it names when it leaves keys out (error when it names none)."""
  model_cls = _model_config_class(d)
  missing = [k for k in _missing_keys(ExperimentConfig, d) if k not in ("model", "preset")]
  if isinstance(d.get("model"), dict):
    missing += _missing_keys(model_cls, d["model"], "model.")
  elif "model" not in d:
    missing.append("model")
  if not missing:
    return d
  preset = d.get("preset")
  if not isinstance(preset, str) or not preset:
    shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
    raise ConfigError(
      f'config: {shown} missing and no preset named; give every key, or add "preset": NAME (e.g. "tiny") '
      "so that the preset's values fill the keys the file leaves out"
    )
  if presets is None:
    raise ConfigError(
      f"config: it leaves keys out and names preset {preset!r}; read it with genrec.configs.from_json, which "
      "knows the presets"
    )
  return _merge(to_dict(presets(f"{d['model_name']}:{preset}")), d)


def _merge(base: dict, top: dict) -> dict:
  out = dict(base)
  for k, v in top.items():
    out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
  return out


# ---------------------------------------------------------------------------------------------------------
# Overrides: --set trainer.steps=2000 model.num_layers=4


def _type_name(typ) -> str:
  """How an --set value of annotation `typ` is written, for error messages."""
  if typing.get_origin(typ) is tuple:
    args = typing.get_args(typ)
    return f"[{_type_name(args[0] if args else str)}, ...]"
  return getattr(typ, "__name__", str(typ))


def _literal(text: str):
  """`text` as JSON, else as a Python literal (tuples, single quotes); raises ValueError if it is neither."""
  try:
    return json.loads(text)
  except json.JSONDecodeError:
    pass
  try:
    return ast.literal_eval(text)
  except (ValueError, SyntaxError, MemoryError, RecursionError):
    raise ValueError(text) from None


def _parse_text(text: str, typ, where: str):
  """An --set value: JSON or a Python literal of the field's type; a tuple field also takes "5,10"."""
  origin = typing.get_origin(typ)
  if typ is str:
    return text
  if origin is tuple:
    try:
      value = _literal(text)
    except ValueError:
      value = None
    if not isinstance(value, (list, tuple)):  # the short form: 5,10 or (5, 10) or a single value
      parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
      (elem, *_) = typing.get_args(typ)
      try:
        return tuple(_parse_text(p, elem, where) for p in parts)
      except ConfigError:
        raise ConfigError(f"--set {where}={text}: expected a list {_type_name(typ)} (JSON, or 1,2)") from None
    try:
      return _coerce(value, typ, where)
    except ConfigError as e:
      raise ConfigError(f"--set {where}={text}: expected a list {_type_name(typ)} ({e})") from None
  if typ is bool:
    low = text.lower()
    if low in ("true", "1", "yes"):
      return True
    if low in ("false", "0", "no"):
      return False
    raise ConfigError(f"--set {where}: expected true/false, got {text!r}")
  try:
    value = _literal(text)
  except ValueError:
    if typ is float:  # Python spellings JSON lacks: "inf", "nan"
      try:
        return float(text)
      except ValueError:
        pass
    raise ConfigError(f"--set {where}={text}: expected {_type_name(typ)}") from None
  try:
    return _coerce(value, typ, where)
  except ConfigError as e:
    raise ConfigError(f"--set {where}={text}: {e}") from None


def override(cfg, assignments: list[str] | dict[str, Any]):
  """Returns `cfg` with dotted-key assignments applied ("a.b=3" strings, or a {key: value} dict)."""
  items = assignments.items() if isinstance(assignments, dict) else [_split_assignment(a) for a in assignments]
  for key, value in items:
    cfg = _set_path(cfg, key.split("."), value, key)
  return cfg


def _split_assignment(a: str) -> tuple[str, str]:
  if "=" not in a:
    raise ConfigError(f"--set expects key=value, got {a!r}")
  k, v = a.split("=", 1)
  return k.strip(), v.strip()


def _set_path(cfg, path: list[str], value, full_key: str):
  ftypes = _field_types(type(cfg))
  if type(cfg) is ExperimentConfig:
    ftypes["model"] = type(cfg.model)
  head = path[0]
  if head not in ftypes:
    raise ConfigError(f"unknown config key {full_key!r}: {head!r} is not one of {sorted(ftypes)}")
  current = getattr(cfg, head)
  if len(path) > 1:
    if not dataclasses.is_dataclass(current):
      raise ConfigError(f"unknown config key {full_key!r}: {head!r} has no sub-keys")
    return dataclasses.replace(cfg, **{head: _set_path(current, path[1:], value, full_key)})
  typ = ftypes[head]
  if dataclasses.is_dataclass(typ):
    raise ConfigError(f"config key {full_key!r} is a section; set one of {sorted(_field_types(typ))}")
  new = _parse_text(value, typ, full_key) if isinstance(value, str) else _coerce(value, typ, full_key)
  return dataclasses.replace(cfg, **{head: new})
