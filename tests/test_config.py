from dataclasses import dataclass
from typing import ClassVar

import pytest

from shammie.baselines import GettingStartedConfig
from shammie.config import ConfigError, ProfileConfig, check_type


@dataclass(frozen=True)
class Demo(ProfileConfig):
    epochs: int = 10
    lr: float = 0.1
    widths: tuple[int, ...] = (8, 16)
    name: str | None = None
    PROFILES: ClassVar[dict] = {"smoke": {"epochs": 1}, "quick": {}, "full": {"epochs": 100, "widths": (64,)}}


def test_profiles_apply_their_values_over_the_defaults():
    assert Demo.for_profile("smoke").epochs == 1
    assert Demo.for_profile("quick").epochs == 10
    full = Demo.for_profile("full")
    assert (full.epochs, full.widths, full.profile) == (100, (64,), "full")


def test_none_override_means_the_profile_value_and_others_win():
    assert Demo.for_profile("full", epochs=None).epochs == 100
    assert Demo.for_profile("full", epochs=3).epochs == 3


def test_ints_pass_as_floats_and_lists_as_tuples():
    cfg = Demo.for_profile("quick", lr=1, widths=[1, 2, 3])
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.widths == (1, 2, 3)


def test_unknown_profile_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"unknown profile 'quik'.*did you mean 'quick'.*smoke, quick, full"):
        Demo.for_profile("quik")


def test_unknown_setting_names_the_close_match():
    with pytest.raises(ConfigError, match=r"unknown setting 'epoch'.*did you mean 'epochs'"):
        Demo.for_profile("quick", epoch=3)


@pytest.mark.parametrize("key,value", [("epochs", 2.5), ("epochs", "3"), ("epochs", True), ("lr", "fast"),
                                       ("widths", [1, "a"]), ("name", 3)])
def test_wrong_types_are_refused(key, value):
    with pytest.raises(ConfigError, match="wrong type"):
        Demo.for_profile("quick", **{key: value})


def test_replace_checks_types_and_names():
    cfg = Demo.for_profile("quick")
    assert cfg.replace(epochs=5).epochs == 5
    with pytest.raises(ConfigError):
        cfg.replace(epochs="5")
    with pytest.raises(ConfigError, match="unknown setting"):
        cfg.replace(epoks=5)


def test_validate_is_called():
    with pytest.raises(ConfigError, match="num_samples"):
        GettingStartedConfig.for_profile("quick", num_samples=5)


def test_check_type_on_nested_unions():
    assert check_type("x", None, int | None) is None
    assert check_type("x", [1, 2], tuple[int, ...] | None) == (1, 2)
    with pytest.raises(ConfigError):
        check_type("x", [1.5], tuple[int, ...])


def test_to_dict_is_plain():
    d = Demo.for_profile("quick").to_dict()
    assert d == {"profile": "quick", "epochs": 10, "lr": 0.1, "widths": [8, 16], "name": None}
