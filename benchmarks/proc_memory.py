"""The process's resident memory, from Linux's ``/proc/self`` (benchmarks' helper; -1 elsewhere)."""

from __future__ import annotations

__all__ = ["peak_rss_bytes", "reset_peak_rss", "rss_bytes"]


def reset_peak_rss() -> None:
    """Reset the peak resident set size (``VmHWM``): Linux's ``clear_refs`` with 5."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _status_bytes(field: str) -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return -1


def peak_rss_bytes() -> int:
    """The peak resident set size since the process started or since :func:`reset_peak_rss`."""
    return _status_bytes("VmHWM")


def rss_bytes() -> int:
    """The resident set size now."""
    return _status_bytes("VmRSS")
