"""configure_ice replaces aioice's host-address gathering (aiortc has no setting for it): if aioice
renames or changes that function, this fails instead of WHIP quietly offering every interface."""

from __future__ import annotations

import inspect

import pytest

pytestmark = pytest.mark.unit


def test_aioice_still_gathers_host_addresses_through_the_function_we_replace() -> None:
    import aioice.ice

    from service.webrtc import configure_ice

    original = aioice.ice.get_host_addresses
    assert list(inspect.signature(original).parameters) == ["use_ipv4", "use_ipv6"]
    src = inspect.getsource(aioice.ice.Connection)
    assert "get_host_addresses(" in src, "aioice no longer gathers host candidates via get_host_addresses"
    try:
        configure_ice(["127.0.0.1", "::1"])
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=False) == ["127.0.0.1"]
        assert aioice.ice.get_host_addresses(use_ipv4=True, use_ipv6=True) == ["127.0.0.1", "::1"]
        configure_ice(None)  # None leaves it as it is
        assert aioice.ice.get_host_addresses(use_ipv4=False, use_ipv6=True) == ["::1"]
    finally:
        aioice.ice.get_host_addresses = original
