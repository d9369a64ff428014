from __future__ import annotations

import dataclasses
import json

import pytest

import genrec.configs
from genrec.config import (
  ConfigError,
  DataConfig,
  EvalConfig,
  ExperimentConfig,
  MeshConfig,
  TrainerConfig,
  from_dict,
  from_json,
  override,
  to_json,
)
from genrec.models.sasrec import SASRecConfig


def _cfg() -> ExperimentConfig:
  return ExperimentConfig(
    model=SASRecConfig(num_items=7, max_len=12, dim=24, num_layers=3, dropout=0.25),
    model_name="sasrec",
    preset="custom",
    data=DataConfig(dataset="synthetic", max_len=12, min_rating=3.5, train_window="random"),
    trainer=TrainerConfig(steps=17, learning_rate=3e-4, progress=False, schedule="inverse_sqrt"),
    mesh=MeshConfig(data=2, fsdp=4, rules=(("batch", "data"), ("embed", "fsdp"), ("kv",))),
    eval=EvalConfig(ks=(1, 7), group_by=("gender",), candidates="sampled:50"),
  )


def _json_dict(cfg) -> dict:
  return json.loads(to_json(cfg))


# -- JSON round trip -------------------------------------------------------------------------------------------


def test_json_round_trip_is_exact():
  cfg = _cfg()
  back = from_json(to_json(cfg))
  assert back == cfg
  assert type(back.model) is SASRecConfig
  assert back.eval.ks == (1, 7) and isinstance(back.eval.ks, tuple)
  assert back.mesh.rules == (("batch", "data"), ("embed", "fsdp"), ("kv",))
  assert all(isinstance(row, tuple) for row in back.mesh.rules)
  assert to_json(back) == to_json(cfg)


def test_every_shipped_preset_round_trips():
  specs = genrec.configs.list_configs()
  assert "sasrec:tiny" in specs
  for spec in specs:
    cfg = genrec.configs.get(spec)
    assert isinstance(cfg, ExperimentConfig), spec
    assert from_json(to_json(cfg)) == cfg, spec


def test_unknown_preset_lists_presets():
  with pytest.raises(ConfigError, match="nope") as e:
    genrec.configs.get("sasrec:nope")
  assert "tiny" in str(e.value) and "ml100k" in str(e.value)


def test_unknown_model_name_names_registered_models():
  d = _json_dict(_cfg())
  d["model_name"] = "no_such_model"
  with pytest.raises((ConfigError, KeyError)) as e:
    from_json(json.dumps(d))
  assert "no_such_model" in str(e.value) and "sasrec" in str(e.value)


def test_missing_model_name_errors():
  d = _json_dict(_cfg())
  del d["model_name"]
  with pytest.raises(ConfigError, match="model_name"):
    from_json(json.dumps(d))


@pytest.mark.parametrize("section", [None, "trainer", "mesh"])
def test_json_unknown_key_errors_naming_valid_keys(section):
  d = _json_dict(_cfg())
  (d if section is None else d[section])["bogus"] = 1
  with pytest.raises(ConfigError, match="bogus") as e:
    from_json(json.dumps(d))
  valid = {None: "trainer", "trainer": "learning_rate", "mesh": "rules"}[section]
  assert valid in str(e.value)


def test_json_extra_field_in_model_section_errors():
  d = _json_dict(_cfg())
  d["model"]["num_expert"] = 4
  with pytest.raises(ConfigError, match="num_expert") as e:
    from_json(json.dumps(d))
  assert "num_layers" in str(e.value)


@pytest.mark.parametrize("model", [3, [1, 2], "x"])
def test_json_model_section_must_be_an_object(model):
  d = _json_dict(_cfg())
  d["model"] = model
  with pytest.raises(ConfigError, match="model"):
    from_json(json.dumps(d))


def test_json_types_are_checked():
  d = _json_dict(_cfg())
  d["trainer"]["learning_rate"] = 1  # an int where a float goes: accepted, made a float
  d["data"]["min_rating"] = 4
  cfg = from_json(json.dumps(d))
  assert cfg.trainer.learning_rate == 1.0 and isinstance(cfg.trainer.learning_rate, float)
  assert isinstance(cfg.data.min_rating, float)
  for section, key, bad in [
    ("trainer", "steps", 2.0),
    ("trainer", "steps", True),
    ("trainer", "steps", "5"),
    ("trainer", "progress", 1),
    ("eval", "ks", 5),
    ("eval", "ks", [5, "x"]),
    ("data", "dataset", 3),
    ("model", "dim", 1.5),
  ]:
    d = _json_dict(_cfg())
    d[section][key] = bad
    with pytest.raises(ConfigError, match=f"{section}.{key}"):
      from_json(json.dumps(d))


def test_malformed_json_is_a_config_error():
  with pytest.raises(ConfigError, match="malformed"):
    from_json("{not json")
  with pytest.raises(ConfigError, match="object"):
    from_json("[1, 2]")


def test_from_dict_rebuilds_a_section():
  assert from_dict(TrainerConfig, {"steps": 9}) == TrainerConfig(steps=9)
  with pytest.raises(ConfigError, match="valid keys"):
    from_dict(TrainerConfig, {"stpes": 9})


@dataclasses.dataclass(frozen=True)
class _Pair:
  shape: tuple[int, str] = (1, "a")


def test_fixed_length_tuple_fields_are_typed_per_position():
  assert from_dict(_Pair, {"shape": [3, "b"]}) == _Pair((3, "b"))
  with pytest.raises(ConfigError, match=r"shape\[1\]"):
    from_dict(_Pair, {"shape": [3, 4]})
  with pytest.raises(ConfigError, match="expected 2 values"):
    from_dict(_Pair, {"shape": [3]})


# -- dotted-key overrides --------------------------------------------------------------------------------------


def test_override_gives_typed_values():
  base = _cfg()
  cfg = override(
    base,
    [
      "trainer.steps=5",
      "model.dim=16",
      "eval.ks=5,10",
      "data.dataset=synthetic",
      "trainer.progress=false",
      "trainer.learning_rate=1e-2",
    ],
  )
  assert cfg.trainer.steps == 5 and type(cfg.trainer.steps) is int
  assert cfg.model.dim == 16 and type(cfg.model.dim) is int and type(cfg.model) is SASRecConfig
  assert cfg.eval.ks == (5, 10)
  assert cfg.data.dataset == "synthetic"
  assert cfg.trainer.progress is False
  assert cfg.trainer.learning_rate == 1e-2 and type(cfg.trainer.learning_rate) is float
  # Everything else is untouched, and the input is not mutated.
  assert dataclasses.replace(cfg, trainer=base.trainer, model=base.model, eval=base.eval) == base
  assert base.trainer.steps == 17
  assert from_json(to_json(cfg)) == cfg


def test_override_accepts_a_dict_and_bool_spellings():
  cfg = override(_cfg(), {"trainer.steps": 8, "eval.ks": [3], "trainer.progress": True})
  assert cfg.trainer.steps == 8 and cfg.eval.ks == (3,) and cfg.trainer.progress is True
  assert override(_cfg(), ["trainer.progress=True"]).trainer.progress is True
  assert override(_cfg(), ["eval.group_by=age,gender"]).eval.group_by == ("age", "gender")


def test_override_int_into_float_but_not_float_into_int():
  cfg = override(_cfg(), ["trainer.learning_rate=2", "trainer.weight_decay=.01"])
  assert cfg.trainer.learning_rate == 2.0 and type(cfg.trainer.learning_rate) is float
  assert cfg.trainer.weight_decay == 0.01
  with pytest.raises(ConfigError, match="trainer.steps"):
    override(_cfg(), ["trainer.steps=1.5"])
  with pytest.raises(ConfigError, match="trainer.steps"):
    override(_cfg(), {"trainer.steps": 2.0})


@pytest.mark.parametrize(
  "assignment",
  [
    "trainer.steps=abc",
    "trainer.steps=1.5",
    "trainer.steps=true",
    "trainer.progress=maybe",
    "model.dim=",
    "eval.ks=5,x",
    "trainer.learning_rate=fast",
  ],
)
def test_override_wrong_type_errors(assignment):
  with pytest.raises(ConfigError, match=assignment.split("=")[0]):
    override(_cfg(), [assignment])


def test_override_unknown_top_level_key_lists_valid_keys():
  with pytest.raises(ConfigError, match="trainr") as e:
    override(_cfg(), ["trainr.steps=5"])
  assert "trainer" in str(e.value) and "model" in str(e.value)


@pytest.mark.parametrize(
  "key,valid", [("trainer.stepz", "steps"), ("model.dimm", "num_layers"), ("data.datset", "dataset")]
)
def test_override_unknown_nested_key_lists_valid_keys(key, valid):
  with pytest.raises(ConfigError, match=key.split(".")[1]) as e:
    override(_cfg(), [f"{key}=5"])
  assert valid in str(e.value)


def test_override_rejects_sections_and_sub_keys_of_leaves():
  with pytest.raises(ConfigError, match="section") as e:
    override(_cfg(), ["trainer=3"])
  assert "steps" in str(e.value)
  with pytest.raises(ConfigError, match="section"):
    override(_cfg(), ["model=3"])
  with pytest.raises(ConfigError, match="sub-keys"):
    override(_cfg(), ["trainer.steps.x=3"])
  with pytest.raises(ConfigError, match="key=value"):
    override(_cfg(), ["trainer.steps"])
