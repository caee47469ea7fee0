"""What Linux /proc says about a process (this one by default): memory and CPU time. Elsewhere
every reading is None (or False), and profiles go without those figures."""

from __future__ import annotations

import os


def status_kb(field: str, pid: int | str = "self") -> int | None:
    """A kB field of /proc/PID/status (VmRSS, VmHWM, ...), or None."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def reset_peak(pid: int | str = "self") -> bool:
    """Reset the process's VmHWM to its current RSS (Linux >= 4.0); False when not possible."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def cpu_seconds(pid: int | str = "self") -> float | None:
    """User + system CPU time of a process, all its threads, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
