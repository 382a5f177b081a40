"""Outbound endpoint URLs (VCSE webhooks, GP FHIR write-back endpoints) and the SSRF rule they obey.

An admin types these URLs and the worker POSTs patient data to them, so a careless or hostile URL
could point the gateway at itself, its cloud metadata service (169.254.169.254) or a private network.
The rule, checked twice:

  registration  `check_url`:   https only, no user:password@, a host; an IP literal must be public,
                                numeric hosts in odd forms (decimal 2852039166, hex, octal) are refused
  sending       `check_resolved`: every address the host resolves to must be public (DNS rebinding),
                                through an injectable resolver (tests pass IP literals or a stub)

`SPGW_ALLOW_INSECURE_ENDPOINTS=true` (the demo and the test suite) also allows http://, loopback and
private (RFC 1918, ULA) addresses, and skips resolving names; link-local, multicast and unspecified
addresses stay refused even then (cloud metadata lives at link-local addresses).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]  # (host, port) -> IP address strings
_ODD_NUMERIC_HOST = re.compile(r"\A(0x[0-9a-f]+|[0-9]+|[0-9a-fx.]+)\Z", re.IGNORECASE)
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def system_resolver(host: str, port: int) -> list[str]:
    """Returns the addresses the operating system resolves `host` to (what httpx will connect to)."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})


def _address(host: str) -> Address | None:
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    return address


def address_refusal(address: Address, *, allow_insecure: bool) -> str | None:
    """Returns why the gateway may not send to this address, or None when it may."""
    if address.is_link_local or address.is_multicast or address.is_unspecified or address.is_reserved:
        return f"{address} is a link-local, multicast, unspecified or reserved address"
    if address.is_global:
        return None
    if allow_insecure and (address.is_loopback or address.is_private):
        return None
    return f"{address} is not a public address (SPGW_ALLOW_INSECURE_ENDPOINTS is not set)"


def check_url(url: str, *, allow_insecure: bool) -> str:
    """Returns the URL when it is an acceptable outbound endpoint; raises ValueError saying why not."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("not a valid URL") from None
    schemes = ("https", "http") if allow_insecure else ("https",)
    if parts.scheme not in schemes:
        raise ValueError(
            "must be an https:// URL" + ("" if allow_insecure else " (SPGW_ALLOW_INSECURE_ENDPOINTS is not set)")
        )
    if "@" in parts.netloc:
        raise ValueError("must not carry a user name or password (user:pw@)")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("must name a host")
    if port == 0:
        raise ValueError("must not name port 0")
    address = _address(host)
    if address is None:
        if _ODD_NUMERIC_HOST.match(host):
            raise ValueError(f"host {host!r} is a number in a non-standard form: write the address dotted")
        if host == "localhost" or host.endswith(".localhost"):
            address = ipaddress.ip_address("127.0.0.1")
    if address is not None:
        why = address_refusal(address, allow_insecure=allow_insecure)
        if why:
            raise ValueError(f"host {why}")
    return url


def check_resolved(url: str, *, allow_insecure: bool, resolver: Resolver = system_resolver) -> None:
    """Raises ValueError unless the URL passes `check_url` and every address its host resolves to now
    is acceptable (checked at send time: a name may have been re-pointed since it was registered)."""
    check_url(url, allow_insecure=allow_insecure)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if _address(host) is not None or allow_insecure:
        return  # an IP literal was checked above; insecure mode (demo, tests) does not resolve names
    try:
        addresses = resolver(host, parts.port or (443 if parts.scheme == "https" else 80))
    except OSError:
        raise ValueError(f"host {host} does not resolve") from None
    if not addresses:
        raise ValueError(f"host {host} does not resolve")
    for raw in addresses:
        address = _address(raw)
        why = "not an IP address" if address is None else address_refusal(address, allow_insecure=False)
        if why:
            raise ValueError(f"host {host} resolves to {raw}: {why}")
