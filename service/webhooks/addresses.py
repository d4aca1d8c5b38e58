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


def forbidden_reason(address: IPAddress) -> str | None:
    """Why webhooks may not reach ``address`` (``"loopback"``, ``"private"``...), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
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
