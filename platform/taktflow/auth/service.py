"""Accounts as a service: users and their roles, passwords, API tokens, and who a request is.

Passwords are hashed with scrypt (werkzeug's default KDF, already installed with Flask);
API tokens are 256-bit random strings of which only the SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from werkzeug.security import check_password_hash, generate_password_hash

from taktflow.auth.models import ApiToken, User, UserRole
from taktflow.errors import Conflict, NotFound, ValidationFailed

USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "tf_"


@cache
def _dummy_hash() -> str:
    """Checked even for unknown users, so that a wrong user name takes as long as a wrong
    password. Made on first use: a KDF hash costs ~0.1 s of CPU, which every process that
    imports this module (each CLI command, the dispatcher process) would pay at start."""
    return generate_password_hash("taktflow-timing-guard")


@dataclass(frozen=True)
class Principal:
    """Who is acting: a user, with the roles this session or token grants."""

    username: str
    roles: frozenset[str]
    display_name: str | None = None
    token_id: int | None = None

    def has(self, *roles: str) -> bool:
        return bool(self.roles & set(roles))

    @property
    def is_admin(self) -> bool:
        return "admin" in self.roles


class AccountService:
    def __init__(self, bind: Engine, roles: Iterable[str]) -> None:
        self.bind = bind
        self.known_roles = list(roles)

    def _now(self) -> datetime:
        return datetime.now(UTC)

    # ------------------------------------------------------------------ users
    def create_user(
        self,
        username: str,
        roles: Iterable[str],
        password: str | None = None,
        display_name: str | None = None,
    ) -> dict:
        username = username.strip().lower()
        if not USERNAME.match(username):
            raise ValidationFailed(
                f"user name {username!r}: use lower-case letters, digits, '.', '_' or '-' "
                "(at most 100)"
            )
        wanted = self._check_roles(roles)
        if password is not None:
            _check_password(password)
        with Session(self.bind) as s, s.begin():
            if s.scalar(select(User).where(User.username == username)) is not None:
                raise Conflict(f"user {username!r} already exists")
            user = User(
                username=username,
                display_name=display_name,
                password_hash=generate_password_hash(password) if password else None,
                active=True,
                created_at=self._now(),
            )
            s.add(user)
            s.flush()
            s.add_all(UserRole(user_id=user.id, role=r) for r in wanted)
            return _user_dict(user, wanted)

    def set_roles(self, username: str, roles: Iterable[str]) -> dict:
        wanted = self._check_roles(roles)
        with Session(self.bind) as s, s.begin():
            user = self._user(s, username)
            s.execute(delete(UserRole).where(UserRole.user_id == user.id))
            s.add_all(UserRole(user_id=user.id, role=r) for r in wanted)
            return _user_dict(user, wanted)

    def set_password(self, username: str, password: str) -> None:
        _check_password(password)
        with Session(self.bind) as s, s.begin():
            self._user(s, username).password_hash = generate_password_hash(password)

    def set_active(self, username: str, active: bool) -> dict:
        with Session(self.bind) as s, s.begin():
            user = self._user(s, username)
            user.active = active
            return _user_dict(user, self._roles(s, user.id))

    def users(self) -> list[dict]:
        with Session(self.bind) as s:
            users = s.scalars(select(User).order_by(User.username)).all()
            return [_user_dict(u, self._roles(s, u.id)) for u in users]

    def user(self, username: str) -> dict:
        with Session(self.bind) as s:
            user = self._user(s, username)
            return _user_dict(user, self._roles(s, user.id))

    # ------------------------------------------------------------------ who is it
    def authenticate(self, username: str, password: str) -> Principal | None:
        """The user for a name and password, or None (unknown, inactive or wrong password)."""
        with Session(self.bind) as s:
            user = s.scalar(select(User).where(User.username == username.strip().lower()))
            stored = user.password_hash if user is not None else None
            ok = check_password_hash(stored or _dummy_hash(), password or "")
            if user is None or not user.active or stored is None or not ok:
                return None
            return Principal(user.username, frozenset(self._roles(s, user.id)), user.display_name)

    def verify_password(self, username: str, password: str) -> bool:
        """For signatures: the signer re-enters their password."""
        return self.authenticate(username, password) is not None

    def principal(self, username: str) -> Principal | None:
        """The active user of a session (roles read afresh, so a change applies at once)."""
        with Session(self.bind) as s:
            user = s.scalar(select(User).where(User.username == username))
            if user is None or not user.active:
                return None
            return Principal(user.username, frozenset(self._roles(s, user.id)), user.display_name)

    # ------------------------------------------------------------------ tokens
    def create_token(
        self, username: str, name: str = "", roles: Iterable[str] | None = None
    ) -> tuple[dict, str]:
        """A new token for `username`; returns (its record, the token itself — shown once)."""
        with Session(self.bind) as s, s.begin():
            user = self._user(s, username)
            own = self._roles(s, user.id)
            limited = None
            if roles:
                limited = self._check_roles(roles)
                extra = sorted(set(limited) - set(own))
                if extra:
                    raise ValidationFailed(
                        f"user {username!r} does not hold role(s) {', '.join(extra)} "
                        f"(roles: {', '.join(own) or 'none'}); a token cannot grant more"
                    )
            secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
            token = ApiToken(
                user_id=user.id,
                name=name or f"token for {username}",
                token_hash=_digest(secret),
                roles=json.dumps(limited) if limited is not None else None,
                created_at=self._now(),
            )
            s.add(token)
            s.flush()
            return _token_dict(token, username), secret

    def revoke_token(self, token_id: int) -> dict:
        with Session(self.bind) as s, s.begin():
            token = s.get(ApiToken, token_id)
            if token is None:
                raise NotFound(f"token {token_id} does not exist")
            if token.revoked_at is None:
                token.revoked_at = self._now()
            user = s.get(User, token.user_id)
            return _token_dict(token, user.username if user else "?")

    def tokens(self) -> list[dict]:
        with Session(self.bind) as s:
            rows = s.execute(
                select(ApiToken, User.username)
                .join(User, User.id == ApiToken.user_id)
                .order_by(ApiToken.id)
            ).all()
            return [_token_dict(t, name) for t, name in rows]

    def principal_for_token(self, secret: str) -> Principal | None:
        """The user a bearer token acts as, or None (unknown, revoked, or user inactive)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 200:
            return None
        with Session(self.bind) as s, s.begin():
            found = s.execute(
                select(ApiToken, User)
                .join(User, User.id == ApiToken.user_id)
                .where(ApiToken.token_hash == _digest(secret))
            ).first()
            if found is None:
                return None
            token, user = found
            if token.revoked_at is not None or not user.active:
                return None
            token.last_used_at = self._now()
            roles = set(self._roles(s, user.id))
            if token.roles is not None:
                roles &= set(json.loads(token.roles))
            return Principal(user.username, frozenset(roles), user.display_name, token.id)

    # ------------------------------------------------------------------ helpers
    def _user(self, s: Session, username: str) -> User:
        user = s.scalar(select(User).where(User.username == username.strip().lower()))
        if user is None:
            raise NotFound(f"user {username!r} does not exist")
        return user

    def _roles(self, s: Session, user_id: int) -> list[str]:
        return sorted(s.scalars(select(UserRole.role).where(UserRole.user_id == user_id)))

    def _check_roles(self, roles: Iterable[str]) -> list[str]:
        wanted = sorted({r.strip() for r in roles if r.strip()})
        if not wanted:
            raise ValidationFailed(f"give at least one role (roles: {', '.join(self.known_roles)})")
        unknown = [r for r in wanted if r not in self.known_roles]
        if unknown:
            raise ValidationFailed(
                f"unknown role(s) {', '.join(unknown)} (roles: {', '.join(self.known_roles)}; "
                "TAKTFLOW_ROLES adds more)"
            )
        return wanted


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise ValidationFailed(f"password too short: use at least {MIN_PASSWORD} characters")
    if len(password) > 1024:
        raise ValidationFailed("password too long (at most 1024 characters)")


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _user_dict(user: User, roles: list[str]) -> dict:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "roles": list(roles),
        "active": user.active,
        "has_password": user.password_hash is not None,
        "created_at": user.created_at.isoformat(),
    }


def _token_dict(token: ApiToken, username: str) -> dict:
    return {
        "id": token.id,
        "user": username,
        "name": token.name,
        "roles": json.loads(token.roles) if token.roles is not None else None,
        "created_at": token.created_at.isoformat(),
        "revoked_at": token.revoked_at.isoformat() if token.revoked_at else None,
        "last_used_at": token.last_used_at.isoformat() if token.last_used_at else None,
    }
