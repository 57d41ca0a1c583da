"""Every frozen config of the project shares one base: the same round trip, the same refusal of an
unknown key (in the config's own error type, naming the valid keys), the same ``replace``."""

from __future__ import annotations

import dataclasses

import pytest

from gan_models.config import ConfigError, FrozenConfig, TrainConfig
from refinement.config import RefineConfig, RefineConfigError
from search.errors import SearchError
from search.settings import StudySettings

CONFIGS = [
    (TrainConfig(), ConfigError, "config", {"steps": 7}),
    (RefineConfig(), RefineConfigError, "refine config", {"steps": 3}),
    (StudySettings(study="gan"), SearchError, "stored study settings", {"trials": 5}),
]


@pytest.mark.parametrize("config, error, name, change", CONFIGS, ids=lambda c: type(c).__name__)
def test_every_config_round_trips_refuses_unknown_keys_and_replaces(config, error, name, change):
    assert isinstance(config, FrozenConfig) and dataclasses.is_dataclass(config)
    assert type(config).from_dict(config.to_dict()) == config
    with pytest.raises(error, match=rf"unknown {name} keys: lr_typo; valid keys: "):
        type(config).from_dict({**config.to_dict(), "lr_typo": 1})
    changed = config.replace(**change)
    assert type(changed) is type(config) and changed.to_dict() == {**config.to_dict(), **change}
    field, value = next(iter(change.items()))  # a field the config has: frozen, not merely absent
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, field, value)
    assert getattr(config, field) != value
