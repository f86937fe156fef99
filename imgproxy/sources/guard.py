"""Which IP addresses a fetch may connect to: public unicast only, by default.

Checked on the address curl is about to connect to (after DNS), so a host name
that resolves to an internal address, or is re-pointed there later, is refused.
"""

from __future__ import annotations

import ipaddress
import socket

import pycurl

_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address stands for (mapped, 6to4, NAT64, Teredo)."""
    found = []
    if ip.ipv4_mapped:
        found.append(ip.ipv4_mapped)
    if ip.sixtofour:
        found.append(ip.sixtofour)
    if ip.teredo:
        found.extend(ip.teredo)  # (server, client)
    if ip in _NAT64 or ip in _NAT64_LOCAL:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def is_public(address: str) -> bool:
    """True for a globally routable unicast address that embeds no internal one."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if ip.version == 6:
        embedded = _embedded_ipv4(ip)
        if embedded:
            return all(is_public(str(v4)) for v4 in embedded)
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_loopback
                                 or ip.is_link_local or ip.is_private or ip.is_unspecified)


class AddressGuard:
    """Refuses, at connect time, any address that is not public unless the host is trusted.

    Installed as curl's OPENSOCKETFUNCTION for one request; `refused` tells why it failed.
    """

    def __init__(self, trusted: bool):
        self.trusted = trusted
        self.refused: str | None = None

    def open_socket(self, purpose: int, address) -> socket.socket | int:
        ip = address.addr[0]
        if not self.trusted and not is_public(ip):
            self.refused = ip
            return pycurl.SOCKET_BAD
        return socket.socket(address.family, address.socktype, address.protocol)
