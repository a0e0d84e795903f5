import pytest

from tfssl import config as config_lib
from tfssl.errors import UserError
from tfssl.methods.base import Method


class _WithExtras(Method):

  @classmethod
  def default_config(cls):
    return {"temperature": 0.1, "learning_rate": 0.3}


def test_method_defaults_then_overrides():
  config = config_lib.build_config(
      _WithExtras, ["batch_size=512", "temperature=0.5", "decay_epochs=10,20", "jit_compile=false",
                    "labels=10pct"], model="resnet18_v2")
  assert config.learning_rate == 0.3  # method default over global default
  assert config.temperature == 0.5 and config.batch_size == 512
  assert config.decay_epochs == (10.0, 20.0)
  assert config.jit_compile is False
  assert config.labels == "10pct" and config.model == "resnet18_v2"


def test_int_given_for_float_key_is_accepted():
  config = config_lib.build_config(_WithExtras, ["learning_rate=1"])
  assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)


def test_unknown_key_names_close_matches():
  with pytest.raises(UserError, match="Unknown config key 'batchsize'.*batch_size"):
    config_lib.build_config(_WithExtras, ["batchsize=3"])


def test_malformed_override_and_wrong_type():
  with pytest.raises(UserError, match="KEY=VALUE"):
    config_lib.build_config(_WithExtras, ["batch_size"])
  with pytest.raises(UserError, match="batch_size"):
    config_lib.build_config(_WithExtras, ["batch_size=abc"])


def test_structural_mismatch_lists_changed_keys():
  config = config_lib.build_config(_WithExtras, [], model="resnet18_v2")
  saved = {"method": "rotation", "model": "resnet18_v2", "batch_size": 3}
  assert config_lib.structural_mismatch(saved, config) == {"method": ("rotation", "supervised")}
