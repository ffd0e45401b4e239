"""Ledger tables. Amounts are integer cents: exact on SQLite and PostgreSQL alike (SQLite has
no decimal type, and a float would make a balanced entry unbalanced by a rounding error)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from taktflow.db import Base
from taktflow.engine.models import UTCDateTime

#: Account types and the side on which their balance normally stands.
ACCOUNT_TYPES = {"asset": "debit", "expense": "debit", "liability": "credit",
                 "equity": "credit", "revenue": "credit"}  # fmt: skip


class Account(Base):
    __tablename__ = "ledger_account"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[str] = mapped_column(String(20))
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class JournalEntry(Base):
    """One posting. Never changed once written: a correction is a reversal (a new entry
    with the lines swapped) that points back at it."""

    __tablename__ = "journal_entry"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    description: Mapped[str] = mapped_column(String(400))
    #: What it belongs to, e.g. a production order "PO-1001" (reports group by it).
    reference: Mapped[str | None] = mapped_column(String(100), index=True)
    #: Set when a workflow step posted it, so a retried step posts once.
    idempotency_key: Mapped[str | None] = mapped_column(String(300), unique=True)
    posted_by: Mapped[str | None] = mapped_column(String(200))
    instance_id: Mapped[int | None] = mapped_column(Integer)
    reverses: Mapped[int | None] = mapped_column(ForeignKey("journal_entry.id"), unique=True)


class JournalLine(Base):
    __tablename__ = "journal_line"
    __table_args__ = (Index("ix_journal_line_account_reference", "account", "reference"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    entry_id: Mapped[int] = mapped_column(ForeignKey("journal_entry.id"), index=True)
    account: Mapped[str] = mapped_column(ForeignKey("ledger_account.code"))
    debit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    credit_cents: Mapped[int] = mapped_column(BigInteger, default=0)
    #: The entry's reference, repeated on each line so balances per order are one query.
    reference: Mapped[str | None] = mapped_column(String(100))
    memo: Mapped[str | None] = mapped_column(Text)
