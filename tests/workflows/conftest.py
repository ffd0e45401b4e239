"""Fixtures for the plant's workflows (workflows/): an engine with every registered action on
a database holding the demo plant, and a way to deploy the workflow files a test needs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from taktflow.app import build_actions
from taktflow.config import Config
from taktflow.engine.actions import ActionRegistry
from taktflow.engine.runtime import WorkflowEngine
from taktflow.mfg.seed import load_plant

ROOT = Path(__file__).parents[2]


@pytest.fixture
def actions() -> ActionRegistry:
    """The actions `make run` registers: the built-in ones, the connectors' and the
    manufacturing model's."""
    return build_actions(Config.from_env({}, {"connectors_path": str(ROOT / "connectors")}))


@pytest.fixture
def plant_engine(sa_engine: Engine, engine: WorkflowEngine) -> WorkflowEngine:
    """An engine (manual clock, every action) on a database holding the demo plant."""
    load_plant(sa_engine, ROOT / "seed_data")
    return engine


@pytest.fixture
def deploy(plant_engine: WorkflowEngine) -> Callable[..., list[dict]]:
    """deploy("workflows/x.yaml", "forms/y.yaml"): deploy files given relative to the checkout,
    as one batch (as `taktflow deploy` does)."""
    return lambda *paths: plant_engine.deploy_paths([str(ROOT / p) for p in paths])
