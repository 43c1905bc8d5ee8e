"""The guard against private targets: each address judged, URLs checked, names resolved."""

from __future__ import annotations

import ipaddress

import httpx
import pytest

from conveyor.contrib.webhooks.targets import (
    TargetPolicy,
    TargetRefused,
    UnresolvableHost,
    check_url,
    parse_networks,
    special_use,
    vetted_addresses,
)


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        # public
        ("8.8.8.8", None),
        ("93.184.216.34", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("2a00:1450:4001:80b::200e", None),
        # IPv4 special use
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private (shared address space)"),
        ("169.254.169.254", "link-local"),  # cloud metadata
        ("192.0.0.8", "reserved"),
        ("192.0.2.10", "reserved (documentation)"),
        ("198.18.0.1", "reserved (benchmarking)"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        # IPv6 special use
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%1", "link-local"),
        ("fc00::1", "private (unique local)"),
        ("fd12:3456:789a::1", "private (unique local)"),
        ("fec0::1", "private (site-local)"),
        ("ff02::1", "multicast"),
        ("2001:db8::1", "reserved (documentation)"),
        ("2001::1", "reserved"),  # Teredo
        ("100::1", "reserved (discard)"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible, deprecated
        ("4000::1", "reserved"),  # outside global unicast 2000::/3
        # IPv4 carried in IPv6: judged by the IPv4 address
        ("::ffff:127.0.0.1", "loopback (as ::ffff:7f00:1)"),
        ("::ffff:169.254.169.254", "link-local (as ::ffff:a9fe:a9fe)"),
        ("::ffff:10.0.0.1", "private (as ::ffff:a00:1)"),
        ("::ffff:8.8.8.8", None),
        ("2002:7f00:1::", "loopback (as 2002:7f00:1::)"),  # 6to4 of 127.0.0.1
        ("2002:a9fe:a9fe::1", "link-local (as 2002:a9fe:a9fe::1)"),
        ("2002:808:808::", None),
        ("64:ff9b::7f00:1", "loopback (as 64:ff9b::7f00:1)"),  # NAT64 of 127.0.0.1
        ("64:ff9b::808:808", None),
        ("64:ff9b:1::1", "private (local NAT64)"),
    ],
)
def test_each_address_is_judged(address: str, kind: str | None) -> None:
    assert special_use(ipaddress.ip_address(address)) == kind


def test_allowed_networks_let_their_addresses_through_and_nothing_else() -> None:
    policy = TargetPolicy(allowed=parse_networks(["127.0.0.1/32", "10.1.0.0/16"]))
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:127.0.0.1")) is None  # the same address
    assert policy.refusal(ipaddress.ip_address("10.1.200.3")) is None
    assert policy.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("10.2.0.1")) == "private"
    assert policy.refusal(ipaddress.ip_address("::1")) == "loopback"
    assert policy.refusal(ipaddress.ip_address("8.8.8.8")) is None
    assert TargetPolicy(allow_all=True).refusal(ipaddress.ip_address("169.254.169.254")) is None
    assert TargetPolicy().refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


def test_networks_are_parsed_strictly() -> None:
    assert parse_networks(["::1", "127.0.0.1", "10.0.0.0/8"]) == (
        ipaddress.ip_network("::1/128"),
        ipaddress.ip_network("127.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    )
    with pytest.raises(ValueError, match=r"'10\.0\.0\.1/8' is not a network"):
        parse_networks(["10.0.0.1/8"])  # host bits set: a typo, not a network
    with pytest.raises(ValueError, match="is not a network"):
        parse_networks(["localhost"])


@pytest.mark.parametrize(
    ("url", "error", "message"),
    [
        ("ftp://example.com/", TargetRefused, "not http or https"),
        ("file:///etc/passwd", TargetRefused, "not http or https"),
        ("gopher://127.0.0.1:6379/_", TargetRefused, "not http or https"),
        ("https:///path", ValueError, "no host"),
        ("https://user:pw@example.com/", ValueError, "carries credentials"),
        ("https://example.com:0/", ValueError, "port 0"),
        ("https://example.com:70000/", ValueError, "port 70000"),
        ("https://example.com/a b", ValueError, "space or a control character"),
        ("https://example.com/\r\nX-Injected: 1", ValueError, "space or a control character"),
        ("https://" + "a" * 9000 + ".com/", ValueError, "more than 8192"),
        (42, ValueError, "must be a string"),
    ],
)
def test_urls_that_cannot_be_webhooks_are_refused(url: object, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        check_url(url)


async def test_names_and_literals_resolving_to_private_addresses_are_refused_without_connecting() -> None:
    policy = TargetPolicy()
    for url, shown in [
        ("http://localhost:8080/hook", "localhost resolves to "),  # 127.0.0.1 or ::1: both loopback
        ("http://127.0.0.1/hook", "127.0.0.1 is not a public address (loopback)"),
        ("http://[::1]:9/hook", "::1 is not a public address (loopback)"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is not a public address (link-local)"),
        ("https://10.0.0.7/hook", "10.0.0.7 is not a public address (private)"),
        ("http://[::ffff:127.0.0.1]/", "not a public address (loopback (as ::ffff:7f00:1))"),
        ("http://0.0.0.0:80/", "0.0.0.0 is not a public address (unspecified)"),
        # 127.0.0.1 written as one number, as the resolver reads it
        ("http://2130706433/", "2130706433 resolves to 127.0.0.1, not a public address (loopback)"),
    ]:
        with pytest.raises(TargetRefused, match="refused to send to") as caught:
            await vetted_addresses(check_url(url), policy)
        assert shown in str(caught.value), (url, str(caught.value))
        assert "allow_private_targets" in str(caught.value)


async def test_a_name_is_refused_when_any_of_its_addresses_is() -> None:
    # localhost has 127.0.0.1 (allowed here) and, with IPv6, ::1 (not): refused as a whole
    # when it has both; the policy decides per address, never by the first answer alone.
    addresses = await vetted_addresses(
        check_url("http://localhost/"), TargetPolicy(allowed=parse_networks(["127.0.0.1", "::1"]))
    )
    assert ipaddress.ip_address("127.0.0.1") in addresses
    if ipaddress.ip_address("::1") in addresses:
        with pytest.raises(TargetRefused, match=r"resolves to ::1, not a public address \(loopback\)"):
            await vetted_addresses(
                check_url("http://localhost/"), TargetPolicy(allowed=parse_networks(["127.0.0.1"]))
            )


async def test_a_name_that_does_not_resolve_is_a_temporary_failure() -> None:
    with pytest.raises(UnresolvableHost, match="cannot resolve"):
        await vetted_addresses(httpx.URL("http://name-that-does-not-exist.invalid/"), TargetPolicy())
