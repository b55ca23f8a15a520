"""The daemon's roles by name (kept apart from :mod:`daemon.service`, so that the command
line knows them without loading what the roles run)."""

from __future__ import annotations

# "hl7" is the report listener; it runs only where [hl7_listener] is enabled.
ROLES = ("scp", "worker", "sender", "scheduler", "web", "hl7")


def parse_roles(text: str) -> tuple[str, ...]:
    """Roles from a comma-separated list; ``all`` means every role.

    Raises:
        ValueError: an unknown role, or none.
    """
    items = [r.strip() for r in text.split(",") if r.strip()]
    if items == ["all"]:
        return ROLES
    unknown = sorted(set(items) - set(ROLES))
    if unknown or not items:
        raise ValueError(f"unknown role(s) {unknown or items}; choose from {', '.join(ROLES)}")
    return tuple(r for r in ROLES if r in items)
