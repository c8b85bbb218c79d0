"""Whether an address is a Ray cluster one can join, asked in milliseconds before ``ray.init``:
Ray's own connection attempts to a wrong address retry for half a minute or more, printing log
lines, before they fail."""
from __future__ import annotations

import os
import socket

__all__ = ["reachable"]

# HTTP/2's client connection preface: a Ray cluster's address is its GCS, a gRPC (HTTP/2) server,
# which must answer it with a SETTINGS frame (RFC 9113, 3.4) - anything else is not a Ray cluster
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])  # + an empty SETTINGS
_H2_SETTINGS = 4


def reachable(address: str, timeout_s: float = 5.0) -> str | None:
    """Why ``HOST:PORT`` is not a Ray cluster one can join (None when it looks like one), so a
    wrong address fails in seconds with one line instead of Ray's long connection retries and
    their log lines: the port must accept a connection and answer as a gRPC (HTTP/2) server
    (not checked with ``RAY_USE_TLS``: a TLS server does not answer in plain text)."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        return f"'{address}' is not HOST:PORT (as `ray start --head` prints it), 'auto', 'local' or ray://HOST:PORT"
    head = b""
    try:
        conn = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
    except socket.timeout:
        return f"nothing answered on port {port} within {timeout_s:g} s"
    except OSError as exc:
        return f"{exc.strerror or exc}"
    with conn:
        if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return None
        try:
            conn.sendall(_H2_PREFACE)
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except socket.timeout:
            return f"nothing answered on port {port} within {timeout_s:g} s"
        except OSError:  # accepted, then reset or closed under us: it answers, not as gRPC does
            head = b""
    if len(head) < 9 or head[3] != _H2_SETTINGS:
        return f"port {port} answers, but not as a Ray cluster (a gRPC server) does"
    return None
