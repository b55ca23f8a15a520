"""What every part of the settings is built from: the section model, and checked types."""

from __future__ import annotations

import ipaddress
from functools import cached_property
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

# DICOM AE titles: 1-16 characters of the default character repertoire, no backslash,
# not all spaces (PS3.5 6.2).
AETitle = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=16, pattern=r"^[ -\[\]-~]+$"),
]
Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, le=86_400)]


def valid_networks(value: list[str]) -> list[str]:
    """The list unchanged when every item is an address or CIDR network."""
    for item in value:
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an address or CIDR network") from exc
    return value


def is_loopback(host: str) -> bool:
    """Whether a listening address is on loopback (``localhost`` counts)."""
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Section(BaseModel):
    """A table of the settings file: unknown keys refused, values fixed once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class AllowedNetworks(Section):
    """A listener's table with the source networks that may connect (loopback by default)."""

    networks: list[str] = Field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])

    @field_validator("networks")
    @classmethod
    def _valid_networks(cls, value: list[str]) -> list[str]:
        return valid_networks(value)

    @cached_property
    def parsed_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks, parsed."""
        return tuple(ipaddress.ip_network(n, strict=False) for n in self.networks)

    def admits(self, address: str) -> bool:
        """Whether a peer's address (IPv4, IPv6 or IPv4-mapped IPv6) is in a network."""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.parsed_networks)
