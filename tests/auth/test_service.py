"""Accounts: users, roles, passwords (a real KDF), API tokens (stored hashed, revocable)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from taktflow.auth.models import ApiToken, User
from taktflow.auth.service import AccountService
from taktflow.config import DEFAULT_ROLES
from taktflow.errors import Conflict, NotFound, ValidationFailed


@pytest.fixture
def accounts(sa_engine: Engine) -> AccountService:
    return AccountService(sa_engine, DEFAULT_ROLES.split(","))


def test_a_password_is_stored_as_a_kdf_hash_and_checked(
    accounts: AccountService, sa_engine: Engine
) -> None:
    created = accounts.create_user("anna", ["operator", "quality"], "setup-1234", "Anna K.")
    assert created["roles"] == ["operator", "quality"] and created["has_password"] is True
    with Session(sa_engine) as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "anna"))
    assert stored is not None and stored.startswith("scrypt:") and "setup-1234" not in stored
    who = accounts.authenticate("Anna", "setup-1234")
    assert who is not None and who.username == "anna" and who.roles == {"operator", "quality"}
    assert accounts.authenticate("anna", "setup-12345") is None
    assert accounts.authenticate("nobody", "setup-1234") is None


def test_a_disabled_user_cannot_log_in_or_use_tokens(accounts: AccountService) -> None:
    accounts.create_user("anna", ["operator"], "setup-1234")
    _, secret = accounts.create_token("anna")
    accounts.set_active("anna", False)
    assert accounts.authenticate("anna", "setup-1234") is None
    assert accounts.principal_for_token(secret) is None
    assert accounts.principal("anna") is None
    accounts.set_active("anna", True)
    assert accounts.principal_for_token(secret) is not None


@pytest.mark.parametrize(
    ("name", "roles", "password", "message"),
    [
        ("Bad Name", ["operator"], None, "user name 'bad name'"),
        ("anna", [], None, "give at least one role"),
        ("anna", ["wizard"], None, "unknown role(s) wizard"),
        ("anna", ["operator"], "short", "password too short"),
    ],
)
def test_bad_accounts_are_refused_with_a_reason(
    accounts: AccountService, name: str, roles: list[str], password: str | None, message: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        accounts.create_user(name, roles, password)
    assert message in caught.value.message
    assert accounts.users() == []


def test_a_user_name_is_unique(accounts: AccountService) -> None:
    accounts.create_user("anna", ["operator"])
    with pytest.raises(Conflict, match="already exists"):
        accounts.create_user("ANNA", ["manager"])


def test_tokens_are_stored_hashed_limited_and_revocable(
    accounts: AccountService, sa_engine: Engine
) -> None:
    accounts.create_user("erp", ["planner", "manager"])
    record, secret = accounts.create_token("erp", "ERP interface", ["planner"])
    assert secret.startswith("tf_") and len(secret) > 40
    with Session(sa_engine) as s:
        stored = s.scalar(select(ApiToken.token_hash))
    assert stored is not None and secret not in stored and len(stored) == 64
    who = accounts.principal_for_token(secret)
    assert who is not None and who.roles == {"planner"} and who.token_id == record["id"]
    assert accounts.tokens()[0]["last_used_at"] is not None
    assert accounts.principal_for_token(secret + "x") is None
    assert accounts.principal_for_token("not-a-token") is None
    accounts.revoke_token(record["id"])
    assert accounts.principal_for_token(secret) is None
    with pytest.raises(NotFound):
        accounts.revoke_token(999)


def test_a_token_cannot_grant_more_than_its_user_holds(accounts: AccountService) -> None:
    accounts.create_user("erp", ["planner"])
    with pytest.raises(ValidationFailed, match="does not hold role"):
        accounts.create_token("erp", roles=["admin"])


def test_role_changes_apply_to_the_next_request(accounts: AccountService) -> None:
    accounts.create_user("anna", ["operator"], "setup-1234")
    accounts.set_roles("anna", ["operator", "quality"])
    who = accounts.principal("anna")
    assert who is not None and who.roles == {"operator", "quality"}
    assert accounts.verify_password("anna", "setup-1234")
    accounts.set_password("anna", "another-pass")
    assert not accounts.verify_password("anna", "setup-1234")
