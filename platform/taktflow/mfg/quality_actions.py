"""Quality: inspection plans and results, nonconformances, dispositions.

Service-task actions and demo-plant seed data.

Being built for issue 6."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from taktflow.engine.actions import ActionRegistry


def register_quality_actions(registry: ActionRegistry) -> None:
    """Register this area's `mfg.*` actions."""


def seed_quality(session: Session, folder: Path) -> dict[str, Any]:
    """Load this area's demo-plant data from `folder` (idempotent); counts of what was loaded."""
    return {}
