"""``host:port`` endpoints as configs write them."""

from __future__ import annotations


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """``0.0.0.0:4317`` → ("0.0.0.0", 4317); ``[::1]:4317`` → ("::1", 4317)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{endpoint!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def join_endpoint(host: str, port: int) -> str:
    """("::1", 4317) → ``[::1]:4317``; ("10.0.0.7", 4317) → ``10.0.0.7:4317``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def validate_endpoint(endpoint: str) -> str:
    """For pydantic validators: the endpoint unchanged, or a ValueError saying why."""
    split_endpoint(endpoint)
    return endpoint
