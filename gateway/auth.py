"""Bearer tokens with scopes, from a YAML tokens file (design.md section 6)."""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

SCOPES = frozenset({"events:write", "events:read", "events:sign", "public:request", "public:approve", "acks:write",
                    "reports:write", "roster:write", "admin"})
# decisions of an HQ leader: `admin` does not imply them, each needs its own token scope
LEADER_SCOPES = frozenset({"public:approve", "events:sign"})


class TokensError(ValueError):
    """The tokens file is missing or invalid."""


@dataclass(frozen=True, slots=True)
class Principal:
    name: str
    scopes: frozenset[str]

    def can(self, scope: str) -> bool:
        return scope in self.scopes or ("admin" in self.scopes and scope not in LEADER_SCOPES)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenBook:
    """Maps token digests to principals; plain tokens are never kept in memory."""

    def __init__(self, entries: dict[str, Principal]):
        self._by_digest = entries

    def lookup(self, token: str) -> Principal | None:
        return self._by_digest.get(digest(token)) if token else None

    def __len__(self) -> int:
        return len(self._by_digest)

    def principals(self) -> list[Principal]:
        """Every principal of the book (check-config: who can sign which warnings)."""
        return list(self._by_digest.values())

    @classmethod
    def from_file(cls, path: str | Path) -> TokenBook:
        """Raises TokensError naming the entry at fault."""
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise TokensError(f"{path}: {exc}") from exc
        if not isinstance(data, list):
            raise TokensError(f"{path}: must be a YAML list of tokens")
        entries: dict[str, Principal] = {}
        for i, e in enumerate(data):
            if not isinstance(e, dict) or not isinstance(e.get("principal"), str):
                raise TokensError(f"{path}: entry {i}: needs a principal name")
            scopes = e.get("scopes") or []
            bad = [s for s in scopes if s not in SCOPES]
            if bad:
                raise TokensError(f"{path}: entry {i} ({e['principal']}): unknown scopes {bad}")
            d = e.get("token_sha256") or (digest(str(e["token"])) if e.get("token") else None)
            if not d:
                raise TokensError(f"{path}: entry {i} ({e['principal']}): needs token_sha256 or token")
            entries[str(d).lower()] = Principal(e["principal"], frozenset(scopes))
        return cls(entries)

    @classmethod
    def admin_default(cls, data_dir: str | Path) -> tuple[TokenBook, Path]:
        """The embedded default: one random all-scopes token in <data-dir>/admin.token and, so a
        warning can be signed by a second principal, <data-dir>/signer.token (principal
        `commander`, scopes events:sign and events:read); both mode 0600, reused on later starts."""
        path = _token_file(Path(data_dir) / "admin.token")
        signer = _token_file(Path(data_dir) / "signer.token")
        return cls({digest(path.read_text().strip()): Principal("admin", SCOPES),
                    digest(signer.read_text().strip()): Principal("commander",
                                                                  frozenset({"events:sign", "events:read"}))}), path


def _token_file(path: Path) -> Path:
    """A random token in `path`, created once (mode 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32) + "\n")
    return path
