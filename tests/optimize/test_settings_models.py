"""One list of setting names per optimizer: the classes, the flow parameters and TOML configs
agree on it, and BootstrapFinetune's train_kwargs names are TrainSettings' fields."""

from __future__ import annotations

import pytest

import dspex
from dspex.evaluate import exact_match
from dspex.finetune import TrainSettings
from dspex.optimize._params import SETTINGS_MODELS, TRAIN_KWARGS, OptimizerSettings
from dspex.teleprompt import Optimizer

OPTIMIZERS = [
    dspex.LabeledFewShot(k=2),
    dspex.BootstrapFewShot(exact_match),
    dspex.BootstrapFewShotWithRandomSearch(exact_match),
    dspex.MIPROv2(exact_match),
    dspex.BootstrapFinetune(exact_match, target="tiny"),
]


def test_every_optimizer_has_a_settings_model() -> None:
    assert sorted(SETTINGS_MODELS) == sorted(o.name for o in OPTIMIZERS)
    assert all(name == m.optimizer for name, m in SETTINGS_MODELS.items())


@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=lambda o: o.name)
def test_settings_are_the_models_fields(optimizer: Optimizer) -> None:
    model = SETTINGS_MODELS[optimizer.name]
    assert set(optimizer.settings()) <= set(model.model_fields)
    model.model_validate(optimizer.settings())
    assert set(OptimizerSettings.model_fields) <= set(model.model_fields)


def test_train_kwargs_are_train_settings_fields() -> None:
    assert set(TRAIN_KWARGS) == set(TrainSettings.__dataclass_fields__)
