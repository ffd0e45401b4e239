"""Purchasing: suppliers, requisitions, approvals, purchase orders, receipts.

Tables.

Being built for issue 6."""

from __future__ import annotations
