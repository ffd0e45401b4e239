"""The double-entry ledger: post balanced journal entries, reverse them, read balances.

Every function takes the caller's Session and never commits: a workflow step's postings
commit or roll back with the step (services own transactions; here the engine's unit does).
Amounts enter and leave as Decimal (text and numbers are accepted) and are stored as cents.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taktflow.errors import Conflict, NotFound, ValidationFailed
from taktflow.mfg.models import ACCOUNT_TYPES, Account, JournalEntry, JournalLine

CENT = Decimal("0.01")


def to_cents(value: Any, what: str) -> int:
    """An amount with at most two decimals, as integer cents; ValueError naming `what`."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what}: {value!r} is not an amount")
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{what}: {value!r} is not an amount") from None
    if not amount.is_finite():
        raise ValueError(f"{what}: {value!r} is not an amount")
    if amount != amount.quantize(CENT):
        raise ValueError(f"{what}: {value} has more than two decimals")
    return int(amount * 100)


def from_cents(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def load_chart(session: Session, path: str | Path) -> int:
    """Add or update the accounts of a chart-of-accounts file (`accounts: [{code, name,
    type}]`); returns how many it holds. Accounts are never deleted (entries refer to them)."""
    from taktflow.yamlflow.loader import YamlProblem, load

    path = Path(path)
    try:
        doc = load(path.read_text(encoding="utf-8"), kind="chart of accounts")
    except YamlProblem as exc:
        raise ValidationFailed(f"{path}: {exc}") from None
    items = doc.get("accounts") if isinstance(doc, Mapping) else None
    if not isinstance(items, list) or not items:
        raise ValidationFailed(f"{path}: expected `accounts:` with a list of accounts")
    for number, item in enumerate(items, 1):
        where = f"{path}: account {number}"
        if not isinstance(item, Mapping) or set(item) - {"code", "name", "type"}:
            raise ValidationFailed(f"{where}: expected code, name and type")
        code, name, kind = str(item.get("code", "")), item.get("name"), item.get("type")
        if not code.strip() or len(code) > 20:
            raise ValidationFailed(f"{where}: code must be 1 to 20 characters")
        if not isinstance(name, str) or not name.strip():
            raise ValidationFailed(f"{where} ({code}): name is missing")
        if kind not in ACCOUNT_TYPES:
            raise ValidationFailed(
                f"{where} ({code}): type {kind!r} is not one of {', '.join(ACCOUNT_TYPES)}"
            )
        account = session.get(Account, code)
        if account is None:
            session.add(Account(code=code, name=name, type=kind, active=True))
        else:
            account.name, account.type = name, kind
    session.flush()
    return len(items)


def post_entry(
    session: Session,
    lines: Iterable[Mapping[str, Any]],
    *,
    description: str,
    now: datetime,
    reference: str | None = None,
    posted_by: str | None = None,
    idempotency_key: str | None = None,
    instance_id: int | None = None,
) -> int:
    """Post a journal entry; its id. Each line is {account, debit | credit, memo?}.

    Refused as a whole (nothing written), with every problem named by line: fewer than two
    lines, an unknown or inactive account, a line with both or neither side or a
    non-positive amount, amounts with more than two decimals, debits that do not equal
    credits. With `idempotency_key`, posting the same key again returns the first entry.
    """
    if idempotency_key is not None:
        existing = session.scalar(
            select(JournalEntry.id).where(JournalEntry.idempotency_key == idempotency_key)
        )
        if existing is not None:
            return existing
    lines = list(lines)
    problems: dict[str, str] = {}
    if not description or not description.strip():
        problems["description"] = "a journal entry needs a description"
    if len(lines) < 2:
        problems["lines"] = f"a journal entry needs at least two lines, got {len(lines)}"
    rows: list[tuple[str, int, int, str | None]] = []
    for number, line in enumerate(lines, 1):
        where = f"line {number}"
        if not isinstance(line, Mapping):
            problems[where] = "expected {account, debit or credit}"
            continue
        unknown = set(line) - {"account", "debit", "credit", "memo"}
        if unknown:
            problems[where] = (
                f"unknown keys {sorted(unknown)} (expected account, debit or credit, memo)"
            )
            continue
        code = str(line.get("account", ""))
        account = session.get(Account, code)
        if account is None or not account.active:
            problems[where] = f"account {code!r} does not exist" + (
                "" if account is None else " any more (inactive)")  # fmt: skip
            continue
        sides = [side for side in ("debit", "credit") if line.get(side) not in (None, 0, "0")]
        if len(sides) != 1:
            problems[where] = f"account {code}: give either a debit or a credit, not " + (
                "both" if sides else "neither")  # fmt: skip
            continue
        try:
            cents = to_cents(line[sides[0]], f"{sides[0]}")
        except ValueError as exc:
            problems[where] = f"account {code}: {exc}"
            continue
        if cents <= 0:
            problems[where] = (
                f"account {code}: {sides[0]} must be positive, got {from_cents(cents)}"
            )
            continue
        debit, credit = (cents, 0) if sides[0] == "debit" else (0, cents)
        rows.append((code, debit, credit, line.get("memo")))
    if not problems:
        debits, credits = sum(r[1] for r in rows), sum(r[2] for r in rows)
        if debits != credits:
            problems["balance"] = (
                f"the entry does not balance: debits {from_cents(debits)}, credits "
                f"{from_cents(credits)} (difference {from_cents(abs(debits - credits))})"
            )
    if problems:
        raise ValidationFailed(
            "journal entry refused: " + "; ".join(f"{k}: {v}" for k, v in problems.items()),
            details=problems,
        )
    entry = JournalEntry(posted_at=now, description=description.strip(), reference=reference,
                         idempotency_key=idempotency_key, posted_by=posted_by,
                         instance_id=instance_id)  # fmt: skip
    session.add(entry)
    session.flush()
    for code, debit, credit, memo in rows:
        session.add(JournalLine(entry_id=entry.id, account=code, debit_cents=debit,
                                credit_cents=credit, reference=reference, memo=memo))  # fmt: skip
    session.flush()
    return entry.id


def reverse_entry(
    session: Session, entry_id: int, *, now: datetime, reason: str, posted_by: str | None = None
) -> int:
    """Correct a posted entry the only way the ledger allows: a new entry with every line's
    sides swapped, pointing back at it. An entry is reversed once; a reversal is not."""
    entry = session.get(JournalEntry, entry_id)
    if entry is None:
        raise NotFound(f"journal entry {entry_id} does not exist")
    if entry.reverses is not None:
        raise Conflict(f"journal entry {entry_id} is itself a reversal: post a new entry instead")
    if session.scalar(select(JournalEntry.id).where(JournalEntry.reverses == entry_id)):
        raise Conflict(f"journal entry {entry_id} is already reversed")
    if not reason or not reason.strip():
        raise ValidationFailed("a reversal needs a reason", details={"reason": "missing"})
    lines = session.scalars(select(JournalLine).where(JournalLine.entry_id == entry_id)).all()
    reversal = JournalEntry(posted_at=now, description=f"Reversal of {entry_id}: {reason}",
                            reference=entry.reference, posted_by=posted_by,
                            reverses=entry_id)  # fmt: skip
    session.add(reversal)
    session.flush()
    for line in lines:
        session.add(JournalLine(entry_id=reversal.id, account=line.account,
                                debit_cents=line.credit_cents, credit_cents=line.debit_cents,
                                reference=line.reference, memo=line.memo))  # fmt: skip
    session.flush()
    return reversal.id


def balance(session: Session, account: str, reference: str | None = None) -> Decimal:
    """Debits minus credits of an account (of one reference, e.g. an order's WIP)."""
    query = select(
        func.coalesce(func.sum(JournalLine.debit_cents), 0),
        func.coalesce(func.sum(JournalLine.credit_cents), 0),
    ).where(JournalLine.account == account)
    if reference is not None:
        query = query.where(JournalLine.reference == reference)
    debit, credit = session.execute(query).one()
    return from_cents(int(debit) - int(credit))


def trial_balance(session: Session) -> dict[str, Any]:
    """Every account with its debit and credit totals and balance; the totals of all, which
    are equal whenever the ledger is sound."""
    sums = dict(
        (code, (int(d), int(c)))
        for code, d, c in session.execute(
            select(JournalLine.account, func.sum(JournalLine.debit_cents),
                   func.sum(JournalLine.credit_cents)).group_by(JournalLine.account)
        )
    )  # fmt: skip
    rows = []
    for account in session.scalars(select(Account).order_by(Account.code)):
        debit, credit = sums.get(account.code, (0, 0))
        rows.append({"account": account.code, "name": account.name, "type": account.type,
                     "debit": from_cents(debit), "credit": from_cents(credit),
                     "balance": from_cents(debit - credit)})  # fmt: skip
    total_debit = sum((r["debit"] for r in rows), Decimal("0.00"))
    total_credit = sum((r["credit"] for r in rows), Decimal("0.00"))
    return {"accounts": rows, "debit": total_debit, "credit": total_credit,
            "balanced": total_debit == total_credit}  # fmt: skip
