"""Console accounts: a name, a role, the areas the user answers for, and an argon2 password hash.

Passwords are never stored or logged; only argon2id hashes (argon2-cffi's defaults, RFC 9106's
low-memory profile) are. Signing in with an unknown name costs the same hash as a wrong password,
so the time taken does not tell which names exist.
"""

from __future__ import annotations

import json
from datetime import datetime
from enum import Enum
from functools import lru_cache

import redis
import redis.asyncio
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, ConfigDict, Field

from audiences.areas import AreaLevel, AreaTree
from broadcast.core.keys import Keys
from broadcast.core.models import AreaCode

USER_NAME = r"^[a-z0-9][a-z0-9_.-]{1,63}$"
MIN_PASSWORD_LENGTH = 10
MAX_PASSWORD_LENGTH = 256


class Role(str, Enum):
    """What a user is at the service."""

    duty_officer = "duty_officer"  # composes, issues, updates, cancels and runs drills
    approver = "approver"  # the second pair of eyes for orange and red
    community_worker = "community_worker"  # follows their committee's roll-up and volunteers
    volunteer = "volunteer"  # sees only their own work list
    admin = "admin"  # manages accounts; reads alerts and the audit log

    @property
    def zh(self) -> str:
        """The role as the console names it."""
        return {
            "duty_officer": "值班员",
            "approver": "审批人",
            "community_worker": "居委社工",
            "volunteer": "志愿者",
            "admin": "管理员",
        }[self.value]


class UserError(ValueError):
    """An account that cannot be created or changed as asked; ``field`` names the input at fault."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class User(BaseModel):
    """One console account as stored."""

    model_config = ConfigDict(extra="ignore")

    name: str = Field(pattern=USER_NAME)
    display_name: str = Field(min_length=1, max_length=64)
    role: Role
    areas: list[AreaCode] = []
    volunteer_id: str | None = None
    password_hash: str
    disabled: bool = False
    created_at: datetime
    # Bumped when the password changes or the account is disabled: sessions opened before end.
    generation: int = 0


@lru_cache(maxsize=1)
def hasher() -> PasswordHasher:
    return PasswordHasher()


@lru_cache(maxsize=1)
def _decoy_hash() -> str:
    return hasher().hash("a password nobody has")


def check_password(password: str) -> None:
    """Refuse passwords too short to resist guessing, or too long to hash cheaply."""
    if len(password) < MIN_PASSWORD_LENGTH:
        raise UserError(f"the password must have at least {MIN_PASSWORD_LENGTH} characters", "password")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise UserError(f"the password may have at most {MAX_PASSWORD_LENGTH} characters", "password")


def check_areas(role: Role, areas: list[str], tree: AreaTree) -> None:
    """Every role but admin answers for some areas; a community worker's are committees."""
    unknown = tree.unknown(areas)
    if unknown:
        raise UserError(f"unknown area code(s): {', '.join(unknown)}", "areas")
    if role is Role.admin:
        return
    if not areas:
        raise UserError(f"a {role.value} needs at least one area (--area CODE)", "areas")
    if role is Role.community_worker:
        wrong = [code for code in areas if tree.get(code).level is not AreaLevel.community]
        if wrong:
            raise UserError(f"a community worker's areas are committees; {', '.join(wrong)} are not", "areas")


def new_user(
    name: str,
    role: Role,
    password: str,
    tree: AreaTree,
    *,
    now: datetime,
    areas: list[str] | None = None,
    display_name: str | None = None,
    volunteer_id: str | None = None,
) -> User:
    """A validated account with its password hashed (nothing stored yet)."""
    check_password(password)
    check_areas(role, areas or [], tree)
    if role is Role.volunteer and not volunteer_id:
        raise UserError("a volunteer account names the volunteer it belongs to (--volunteer ID)", "volunteer_id")
    return User(
        name=name,
        display_name=display_name or name,
        role=role,
        areas=areas or [],
        volunteer_id=volunteer_id,
        password_hash=hasher().hash(password),
        created_at=now,
    )


def store_user(client: redis.Redis, keys: Keys, user: User, *, replace: bool = False) -> None:
    """Save an account; a new one may not take an existing name."""
    if replace:
        client.hset(keys.users, user.name, user.model_dump_json())
    elif not client.hsetnx(keys.users, user.name, user.model_dump_json()):
        raise UserError(f"a user named {user.name} already exists", "name")


def load_user(client: redis.Redis, keys: Keys, name: str) -> User | None:
    raw = client.hget(keys.users, name)
    return User.model_validate_json(raw) if raw else None


async def load_user_async(client: redis.asyncio.Redis, keys: Keys, name: str) -> User | None:
    raw = await client.hget(keys.users, name)
    return User.model_validate_json(raw) if raw else None


def list_users(client: redis.Redis, keys: Keys) -> list[User]:
    """Every account, by name."""
    users = [User.model_validate_json(raw) for raw in client.hvals(keys.users)]
    return sorted(users, key=lambda user: user.name)


def verify_password(user: User | None, password: str) -> bool:
    """True when ``password`` is the user's; an unknown or disabled user costs the same and fails."""
    try:
        hasher().verify(user.password_hash if user else _decoy_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return user is not None and not user.disabled


def with_password(user: User, password: str) -> User:
    """The user with a new password; every session opened with the old one ends."""
    check_password(password)
    return user.model_copy(update={"password_hash": hasher().hash(password), "generation": user.generation + 1})


def with_disabled(user: User, disabled: bool) -> User:
    """The user disabled (every session and sign-in ends; tokens stop working) or enabled again."""
    generation = user.generation + 1 if disabled else user.generation
    return user.model_copy(update={"disabled": disabled, "generation": generation})


def rehashed(user: User, password: str) -> User | None:
    """The user with a fresh hash when the stored one uses weaker parameters than today's."""
    if not hasher().check_needs_rehash(user.password_hash):
        return None
    return user.model_copy(update={"password_hash": hasher().hash(password)})


def public_view(user: User) -> dict[str, object]:
    """The account without its password hash, as pages and the API show it."""
    data = json.loads(user.model_dump_json(exclude={"password_hash"}))
    data["role_zh"] = user.role.zh
    return data
