"""Where a webhook may be sent: the URL checked, its host resolved, every address judged.

A webhook's URL comes from whoever registered the endpoint, so without a guard a job could
make the worker POST to the cloud's metadata service (169.254.169.254), a database's HTTP
port on localhost, or anything else inside the network (server-side request forgery). The
guard: only ``http`` and ``https``; the host is resolved here, and the URL is refused when
*any* of its addresses is loopback, private, link-local, multicast, reserved or unspecified
(also in their IPv4-mapped, 6to4 and NAT64 forms), unless the settings allow it. The request
then connects to an address vetted here (see ``send``), never to a name resolved again, so a
DNS answer that changes between the check and the connection (DNS rebinding) gains nothing;
every redirect is judged the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import httpx

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

MAX_URL_LENGTH = 8192

# Special-purpose ranges (IANA's registries), each with the word a refusal uses for it. Every
# IPv4 range here is also outside what Python's ipaddress calls global; the table keeps the
# judgement the same on every Python version.
_IPV4_REFUSED: tuple[tuple[IPv4Network, str], ...] = tuple(
    (IPv4Network(net), why)
    for net, why in (
        ("0.0.0.0/8", "unspecified"),
        ("10.0.0.0/8", "private"),
        ("100.64.0.0/10", "private (shared address space)"),
        ("127.0.0.0/8", "loopback"),
        ("169.254.0.0/16", "link-local"),
        ("172.16.0.0/12", "private"),
        ("192.0.0.0/24", "reserved"),
        ("192.0.2.0/24", "reserved (documentation)"),
        ("192.88.99.0/24", "reserved"),
        ("192.168.0.0/16", "private"),
        ("198.18.0.0/15", "reserved (benchmarking)"),
        ("198.51.100.0/24", "reserved (documentation)"),
        ("203.0.113.0/24", "reserved (documentation)"),
        ("224.0.0.0/4", "multicast"),
        ("240.0.0.0/4", "reserved"),  # with 255.255.255.255, the broadcast address
    )
)
_IPV6_REFUSED: tuple[tuple[IPv6Network, str], ...] = tuple(
    (IPv6Network(net), why)
    for net, why in (
        ("::/128", "unspecified"),
        ("::1/128", "loopback"),
        ("64:ff9b:1::/48", "private (local NAT64)"),
        ("100::/64", "reserved (discard)"),
        ("2001::/23", "reserved"),  # protocol assignments, Teredo among them
        ("2001:db8::/32", "reserved (documentation)"),
        ("fc00::/7", "private (unique local)"),
        ("fe80::/10", "link-local"),
        ("fec0::/10", "private (site-local)"),
        ("ff00::/8", "multicast"),
    )
)
_GLOBAL_UNICAST = IPv6Network("2000::/3")
_NAT64 = IPv6Network("64:ff9b::/96")


class TargetRefused(Exception):
    """The URL may not be sent to: a scheme other than http(s), or an address the settings do
    not allow. Sending again cannot change that."""


class UnresolvableHost(Exception):
    """The host name did not resolve (may be temporary: DNS down, a record not yet made)."""


@dataclass(frozen=True)
class TargetPolicy:
    """``allow_all``: send anywhere (the guard is off); ``allowed``: networks allowed even
    though the guard would refuse them (an internal receiver, a test's loopback server)."""

    allow_all: bool = False
    allowed: tuple[IPNetwork, ...] = ()

    def refusal(self, address: IPAddress) -> str | None:
        """Why ``address`` may not be sent to, or None when it may."""
        if self.allow_all or any(_contains(net, address) for net in self.allowed):
            return None
        return special_use(address)


def special_use(address: IPAddress) -> str | None:
    """The kind of a non-public address (``loopback``, ``private``, ``link-local``,
    ``multicast``, ``reserved``, ``unspecified``, with a detail for some); None for an
    address on the public internet. IPv4 addresses inside IPv6 ones (mapped ``::ffff:a.b.c.d``,
    6to4 ``2002::/16``, NAT64 ``64:ff9b::/96``) are judged by the IPv4 address they carry."""
    if isinstance(address, IPv4Address):
        for net, why in _IPV4_REFUSED:
            if address in net:
                return why
        return None if address.is_global else "reserved"
    embedded = address.ipv4_mapped or address.sixtofour
    if embedded is None and address in _NAT64:
        embedded = IPv4Address(int(address) & 0xFFFFFFFF)
    if embedded is not None:
        inner = special_use(embedded)
        return None if inner is None else f"{inner} (as {address})"
    if address.scope_id:
        return "link-local"
    for net6, why in _IPV6_REFUSED:
        if address in net6:
            return why
    if address not in _GLOBAL_UNICAST:
        return "reserved"
    return None


def parse_networks(values: Iterable[str | IPNetwork | IPAddress]) -> tuple[IPNetwork, ...]:
    """Networks as written (``10.0.0.0/8``, ``::1``, ``127.0.0.1``); ValueError names a bad one."""
    networks: list[IPNetwork] = []
    for value in values:
        if isinstance(value, IPv4Network | IPv6Network):
            networks.append(value)
            continue
        if isinstance(value, IPv4Address | IPv6Address):
            networks.append(ipaddress.ip_network(value))
            continue
        if not isinstance(value, str):
            raise ValueError(f"{value!r} is not a network (write 10.0.0.0/8 or an address)")
        try:
            networks.append(ipaddress.ip_network(value.strip()))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a network: {exc}") from None
    return tuple(networks)


def check_url(url: object) -> httpx.URL:
    """The URL parsed, if a webhook may be sent to it at all: http or https, a host, a port
    from 1 to 65535, no credentials in it. TargetRefused (for the scheme) or ValueError."""
    if not isinstance(url, str | httpx.URL):
        raise ValueError(f"the URL must be a string, got {type(url).__name__}")
    text = str(url)
    if len(text) > MAX_URL_LENGTH:
        raise ValueError(f"the URL has {len(text)} characters, more than {MAX_URL_LENGTH}")
    if any(ord(ch) < 33 or ord(ch) == 127 for ch in text):
        raise ValueError(f"the URL {text[:200]!r} has a space or a control character in it")
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise ValueError(f"the URL {text[:200]!r} is not valid: {exc}") from None
    if parsed.scheme not in ("http", "https"):
        raise TargetRefused(f"the URL {text[:200]!r} is not http or https")
    if not parsed.raw_host:
        raise ValueError(f"the URL {text[:200]!r} has no host")
    if parsed.userinfo:
        raise ValueError(
            "the URL carries credentials (user:password@): send them in a header instead, "
            "so that they stay out of results and messages"
        )
    port = parsed.port
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"the URL {text[:200]!r} has port {port}, outside 1 to 65535")
    return parsed


async def vetted_addresses(url: httpx.URL, policy: TargetPolicy) -> list[IPAddress]:
    """Every address the URL's host resolves to, in the resolver's order, once each; raises
    TargetRefused when any of them is refused (a name with one public and one private address
    is refused: which one a connection would get is not ours to choose), UnresolvableHost when
    the name does not resolve."""
    host = url.raw_host.decode("ascii")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(host, port)
    for address in addresses:
        why = policy.refusal(address)
        if why is not None:
            shown = f"{host} is" if host.strip("[]") == str(address) else f"{host} resolves to {address},"
            raise TargetRefused(
                f"refused to send to {url.scheme}://{url.netloc.decode('ascii')}: {shown} not a public "
                f"address ({why}); allow it with allow_private_targets (CONVEYOR_WEBHOOK_ALLOW_PRIVATE)"
            )
    return addresses


async def resolve(host: str, port: int) -> list[IPAddress]:
    """The addresses of ``host`` (an IP literal is its own answer, without DNS)."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            host.strip("[]"), port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
        )
    except (socket.gaierror, UnicodeError) as exc:
        raise UnresolvableHost(f"cannot resolve {host}: {exc}") from None
    seen: dict[IPAddress, None] = {}
    for family, _, _, _, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            seen.setdefault(ipaddress.ip_address(sockaddr[0]), None)
    if not seen:
        raise UnresolvableHost(f"cannot resolve {host}: no IPv4 or IPv6 address")
    return list(seen)


def _contains(net: IPNetwork, address: IPAddress) -> bool:
    if net.version == address.version:
        return address in net
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped in net
    return False


def authority(url: httpx.URL) -> str:
    """``host[:port]`` as the Host header carries it (the port only when not the scheme's)."""
    return url.netloc.decode("ascii")


def pinned(url: httpx.URL, address: IPAddress) -> httpx.URL:
    """The URL with its host replaced by a vetted address (the Host header and TLS's server
    name keep the original: see ``send``)."""
    return url.copy_with(host=str(address))
