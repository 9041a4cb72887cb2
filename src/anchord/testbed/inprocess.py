"""A Transport that asks the testbed's Authority directly, without sockets.

The core's tests use it with a FakeClock: the same resolution code as over the network,
the same signed zones, no ports and no waiting. Every query goes through wire format
both ways, as it would on a socket, so parsing and size limits are exercised too.
"""

from __future__ import annotations

import dns.message
import dns.rdatatype

from anchord.core.ports import ServerAddress, UpstreamError, UpstreamResult
from anchord.testbed.authserver import Authority, render, udp_limit


class AuthorityTransport:
    def __init__(self, authority: Authority) -> None:
        self.authority = authority
        self.sent: list[tuple[ServerAddress, str]] = []  # (server, "qname/qtype") per query

    async def query(self, server: ServerAddress, request: dns.message.Message, *,
                    tcp: bool = False, timeout: float = 1.5) -> UpstreamResult:
        query = dns.message.from_wire(request.to_wire())
        q = query.question[0]
        self.sent.append((server, f"{q.name}/{dns.rdatatype.to_text(q.rdtype)}"))
        response = self.authority.respond(query, server.host)
        if response is None:
            return UpstreamResult(server, None, UpstreamError.TIMEOUT, rtt=timeout, tcp=tcp)
        wire = render(response, 65535 if tcp else udp_limit(query))
        return UpstreamResult(server, dns.message.from_wire(wire), rtt=0.001, tcp=tcp)

