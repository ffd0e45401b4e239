"""Quality: inspection plans and results, nonconformances, dispositions.

Tables.

Being built for issue 6."""

from __future__ import annotations
