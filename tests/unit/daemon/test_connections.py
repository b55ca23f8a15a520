"""Each peer address's share of the associations, and its setting."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from daemon.connections import AddressShares, GuardedAE
from daemon.scp import build_ae
from daemon.settings import NodeSettings


def test_an_address_gets_no_more_than_its_share() -> None:
    shares = AddressShares(2)
    assert shares.take("10.0.0.1")
    assert shares.take("10.0.0.1")
    assert not shares.take("10.0.0.1")
    assert shares.take("10.0.0.2")
    shares.give_back("10.0.0.1")
    assert shares.held("10.0.0.1") == 1
    assert shares.take("10.0.0.1")


def test_the_default_share_is_half_the_associations() -> None:
    assert NodeSettings(max_associations=8).per_address_limit == 4
    assert NodeSettings(max_associations=1).per_address_limit == 1
    node = NodeSettings(max_associations=8, max_associations_per_address=8)
    assert node.per_address_limit == 8


def test_a_share_larger_than_the_total_is_refused_naming_the_key() -> None:
    with pytest.raises(ValidationError, match="max_associations_per_address"):
        NodeSettings(max_associations=4, max_associations_per_address=5)


def test_the_ae_from_settings_guards_its_servers() -> None:
    ae = build_ae(NodeSettings(max_associations=6))
    assert isinstance(ae, GuardedAE)
    assert ae.per_address == 3
