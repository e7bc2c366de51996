"""What one machine lets a load process open: files per process, ports per source address.

Each socket is a file: a process opening more sockets than RLIMIT_NOFILE allows fails half-way,
so every load process raises its soft limit up to the hard one first and refuses to start (with
the numbers and what to do) when even that is short. Each connection to one server address also
takes a local port of its source address: about 28,000 with Linux's default range
(32768-60999), so past that the client sockets are spread over several loopback source
addresses (127.0.0.0/8 is all loopback on Linux, nothing to configure).
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass

try:
    import resource
except ImportError:  # not a Unix: no limit to check
    resource = None  # type: ignore[assignment]

SPARE_FILES = 64  # the process's own files, its REST pool, the /metrics scraper
PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


class LimitError(Exception):
    """A run that this machine cannot hold as asked; the message says what to do."""


def source_addresses(spec: str | None, target_host: str) -> list[str]:
    """The source addresses of `--source-addresses`: a range (`127.0.0.2-127.0.0.9`), a
    comma-separated list, or a count (`8`: 127.0.0.1 to 127.0.0.8). Loopback only, and of the
    target's family."""
    if not spec:
        return []
    spec = spec.strip()
    if spec.isdigit():
        count = int(spec)
        if not 1 <= count <= 65_534:
            raise LimitError("--source-addresses: a count from 1 to 65534")
        if ":" in target_host:
            raise LimitError("--source-addresses: IPv6 has one loopback address (::1)")
        first = int(ipaddress.IPv4Address("127.0.0.1"))
        return [str(ipaddress.IPv4Address(first + n)) for n in range(count)]
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    for part in spec.split(","):
        part = part.strip()
        try:
            if "-" in part:
                low, high = (ipaddress.ip_address(p.strip()) for p in part.split("-", 1))
                if low.version != high.version or int(high) < int(low):
                    raise ValueError(part)
                if int(high) - int(low) > 65_534:
                    raise LimitError("--source-addresses: at most 65535 addresses")
                addresses += [ipaddress.ip_address(n) for n in range(int(low), int(high) + 1)]
            else:
                addresses.append(ipaddress.ip_address(part))
        except ValueError:
            raise LimitError(f"--source-addresses: cannot read {part!r}") from None
    target_v6 = ":" in target_host
    for address in addresses:
        if not address.is_loopback:
            raise LimitError(f"--source-addresses: {address} is not a loopback address")
        if (address.version == 6) != target_v6:
            raise LimitError(f"--source-addresses: {address} is not of the target's family")
    return list(dict.fromkeys(str(a) for a in addresses))


def port_range() -> int:
    """How many ephemeral ports one source address has towards one server address."""
    try:
        with open(PORT_RANGE) as text:
            low, high = (int(n) for n in text.read().split())
        return high - low + 1
    except (OSError, ValueError):
        return 28_232  # Linux's default range


def check_ports(sockets: int, sources: int) -> None:
    """Refuse a run whose sockets would not fit the source addresses' ports."""
    ports = port_range()
    per_source = math.ceil(sockets / max(1, sources))
    if per_source > ports:
        needed = math.ceil(sockets / ports)
        raise LimitError(
            f"{sockets} sockets from {max(1, sources)} source address(es) need {per_source} "
            f"local ports each, but one address has {ports} towards one server port "
            f"({PORT_RANGE}); spread them: --source-addresses {needed} "
            f"(or 127.0.0.2-127.0.0.{needed + 1})"
        )


@dataclass(frozen=True)
class FileLimit:
    """The open-files limit of this process after raising it as far as allowed."""

    soft: int
    hard: int
    raised_from: int | None  # the soft limit before, when it was raised


def ensure_files(needed: int, *, processes: int = 1) -> FileLimit | None:
    """Raise RLIMIT_NOFILE's soft limit (up to the hard one) to fit `needed` files; raise
    LimitError when even the hard limit is short. None where there are no such limits."""
    if resource is None:
        return None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    raised_from = None
    if soft != resource.RLIM_INFINITY and soft < needed:
        wanted = needed if hard == resource.RLIM_INFINITY else min(hard, needed)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError):
            pass
        else:
            raised_from, soft = soft, wanted
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return FileLimit(soft, hard, raised_from)
    per_process = max(1, hard - SPARE_FILES)
    raise LimitError(
        f"this load process would open {needed} files (sockets) but may open {hard} at most "
        f"(RLIMIT_NOFILE's hard limit). Raise it (`ulimit -n {needed}` as root, "
        f"LimitNOFILE= in a systemd unit, nofile in /etc/security/limits.conf) or spread the "
        f"viewers over more load processes: --workers "
        f"{max(processes + 1, math.ceil(needed * processes / per_process))}"
    )


def files_needed(viewers: int, player: bool) -> int:
    """Files one load process opens for `viewers` viewers (a player's HTTP connections come
    from a shared pool, but count one each to be safe)."""
    return viewers * (2 if player else 1) + SPARE_FILES
