"""Resident memory of the running benchmark (Linux ``/proc``), shared by the benchmark scripts."""


def rss_gib() -> tuple[float, float]:
    """Current RSS and its peak (VmHWM: since the start, or since the last :func:`reset_peak`), GiB."""
    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f)
    return int(status["VmRSS"].split()[0]) / 2**20, int(status["VmHWM"].split()[0]) / 2**20


def reset_peak() -> None:
    """Start a new peak-RSS measurement (writing 5 to clear_refs resets VmHWM)."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
