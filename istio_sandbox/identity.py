"""Who is calling: users and ServiceAccounts behind kubeconfig bearer tokens.

A request without ``Authorization`` is :data:`ADMIN` (``system:admin`` in ``system:masters``),
so kubeconfigs without credentials keep working as cluster admins. Tokens are issued by the
admin endpoint ``POST /sandbox/tokens``; a request with a token nobody issued is answered
401 Unauthorized, as by kube-apiserver's token authenticators.

ServiceAccount names and groups follow ``k8s.io/apiserver/pkg/authentication/serviceaccount``:
user ``system:serviceaccount:<namespace>:<name>``, groups ``system:serviceaccounts``,
``system:serviceaccounts:<namespace>``; every authenticated user is also in
``system:authenticated``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SA_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"


@dataclass(frozen=True)
class UserInfo:
    """An authenticated caller, as ``user.Info``."""

    name: str
    groups: tuple[str, ...] = ()
    service_account: tuple[str, str] | None = None
    """(namespace, name) when the caller is a ServiceAccount."""

    def to_json(self) -> dict[str, Any]:
        return {"user": self.name, "groups": list(self.groups)}


@dataclass(frozen=True)
class IssuedToken:
    """A bearer token and the identity it authenticates as (``POST /sandbox/tokens``)."""

    token: str
    user: str
    groups: tuple[str, ...]

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> IssuedToken:
        return cls(str(body["token"]), str(body["user"]), tuple(body.get("groups") or ()))


ADMIN = UserInfo("system:admin", (SYSTEM_MASTERS, AUTHENTICATED))
"""The caller of a request that carries no credentials."""


def service_account_user(namespace: str, name: str) -> UserInfo:
    return UserInfo(
        f"{SA_PREFIX}{namespace}:{name}",
        (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED),
        (namespace, name),
    )


def user_with_groups(name: str, groups: list[str] | tuple[str, ...] = ()) -> UserInfo:
    """A user; ``system:authenticated`` is added as kube-apiserver adds it to every user."""
    out = [g for g in groups if g != AUTHENTICATED]
    return UserInfo(name, (*dict.fromkeys(out), AUTHENTICATED))


def split_service_account(username: str) -> tuple[str, str] | None:
    """(namespace, name) of ``system:serviceaccount:<ns>:<name>``; None for other users."""
    if not username.startswith(SA_PREFIX):
        return None
    ns, sep, name = username[len(SA_PREFIX) :].partition(":")
    if not sep or not ns or not name or ":" in name:
        return None
    return ns, name


@dataclass
class Tokens:
    """Bearer tokens issued so far and whom each one stands for."""

    by_token: dict[str, UserInfo] = field(default_factory=dict)

    def issue(self, user: UserInfo) -> str:
        token = f"sandbox-{secrets.token_urlsafe(24)}"
        self.by_token[token] = user
        return token

    def lookup(self, token: str) -> UserInfo | None:
        return self.by_token.get(token)

    def dump(self) -> list[dict[str, Any]]:
        return [
            {
                "token": token,
                "user": u.name,
                "groups": list(u.groups),
                "serviceAccount": list(u.service_account) if u.service_account else None,
            }
            for token, u in self.by_token.items()
        ]

    def load(self, rows: list[dict[str, Any]]) -> None:
        self.by_token.clear()
        for row in rows:
            sa = row.get("serviceAccount")
            self.by_token[str(row["token"])] = UserInfo(
                str(row["user"]), tuple(row.get("groups") or ()), (sa[0], sa[1]) if sa else None
            )
