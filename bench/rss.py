"""Peak memory of a benchmark's child process, shared by the benchmarks."""

from __future__ import annotations

import resource


def peak_rss_mib(children: bool = False) -> dict[str, float]:
    """This process's peak RSS in MiB: VmHWM (this address space only) when available, else ru_maxrss.

    ru_maxrss of an exec'd child also keeps the high-water mark of the address space it replaced, so
    VmHWM is preferred. With ``children``, the largest peak of the processes it started is added (an
    upper bound of the combined peak), for code that starts helpers of its own.
    """
    out = {"ru_maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "children_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024 if children else 0.0}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    out["vmhwm_mib"] = int(line.split()[1]) / 1024
    except OSError:
        pass
    out["peak_mib"] = out.get("vmhwm_mib", out["ru_maxrss_mib"]) + out["children_mib"]
    return out
