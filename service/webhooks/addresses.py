"""Which addresses a webhook may reach: public ones only, unless the operator allows private.

A URL is checked twice: at submit, where its host is a literal IP (a ``422`` names the field),
and at send time, on every address its host name resolves to. The connection then goes to the
address that was checked (see delivery.py), so a name that resolves differently a moment later
(DNS rebinding) cannot reach a private address.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from service.webhooks.errors import ForbiddenAddress

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


#: NAT64 prefixes (RFC 6052's well-known one, RFC 8215's local-use one): the last 32 bits
#: are the IPv4 address a NAT64 gateway connects to.
_NAT64_NETWORKS = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)
#: IPv4-compatible addresses (deprecated by RFC 4291, still routed by some stacks): ::a.b.c.d.
_IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not reach ``address`` (``"loopback"``, ``"private"``...), or None.

    An IPv6 address that carries an IPv4 address (IPv4-mapped, IPv4-compatible, 6to4, NAT64,
    Teredo) is also judged by the IPv4 address it carries: a gateway or the host's own stack
    would deliver the connection there.
    """
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return forbidden_reason(address.ipv4_mapped)
        for form, embedded in embedded_ipv4(address):
            reason = _direct_reason(embedded)
            if reason is not None:
                return f"{form} {reason}"
    return _direct_reason(address)


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The IPv4 addresses that ``address`` carries, each with an adjective naming its form."""
    found: list[tuple[str, ipaddress.IPv4Address]] = []
    if address.sixtofour is not None:
        found.append(("6to4-embedded", address.sixtofour))
    if address.teredo is not None:
        server, client = address.teredo
        found += [("Teredo-embedded", server), ("Teredo-embedded", client)]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in _NAT64_NETWORKS):
        found.append(("NAT64-embedded", low32))
    # :: and ::1 are IPv6's own unspecified and loopback addresses, not IPv4-compatible ones.
    if address in _IPV4_COMPATIBLE and int(address) > 1:
        found.append(("IPv4-compatible", low32))
    return found


def _direct_reason(address: IPAddress) -> str | None:
    """Why ``address`` itself (not what it carries) may not be reached, or None."""
    checks = (
        (address.is_loopback, "loopback"),
        (address.is_link_local, "link-local"),
        (address.is_unspecified, "unspecified"),
        (address.is_multicast, "multicast"),
        (address.is_private, "private"),
        (address.is_reserved, "reserved"),
        (not address.is_global, "non-public"),
    )
    for hit, reason in checks:
        if hit:
            return reason
    return None


def literal_ip(host: str) -> IPAddress | None:
    """``host`` as an IP address where it is one (``[::1]`` brackets allowed), else None."""
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def check_literal_host(url: str, allow_private: bool) -> str | None:
    """A user-facing reason to refuse ``url`` at submit, or None.

    Only a host written as an IP address is judged here; names are resolved at send time.
    """
    host = urlsplit(url).hostname or ""
    address = literal_ip(host)
    if address is None or allow_private:
        return None
    reason = forbidden_reason(address)
    if reason is None:
        return None
    return (
        f"{host} is a {reason} address; webhooks may only reach public addresses "
        "(operators can allow private ones with FINETUNE_WEBHOOK_ALLOW_PRIVATE=1)."
    )


def resolve_allowed(host: str, port: int, allow_private: bool) -> list[IPAddress]:
    """Every address ``host`` resolves to, checked; ForbiddenAddress where any is refused.

    Refusing where *any* address is private keeps a name with one public and one private
    record from reaching the private one.
    """
    literal = literal_ip(host)
    if literal is not None:
        candidates: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ForbiddenAddress(f"cannot resolve {host}: {exc}") from exc
        candidates = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in candidates:
                candidates.append(address)
    if not allow_private:
        for address in candidates:
            reason = forbidden_reason(address)
            if reason is not None:
                raise ForbiddenAddress(
                    f"{host} resolves to {address}, a {reason} address; webhooks may only "
                    "reach public addresses (FINETUNE_WEBHOOK_ALLOW_PRIVATE=1 allows private)"
                )
    return candidates
