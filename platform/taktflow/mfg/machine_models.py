"""Machine time: state intervals, counts, shifts, reason codes, downtime, OEE.

Tables.

Being built for issue 6."""

from __future__ import annotations
