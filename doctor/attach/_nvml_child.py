"""Runs in a child interpreter (NVML can hang or segfault, e.g. under WSL): samples every GPU over a
window and prints RESULT_MARKER + JSON. Standalone on purpose: it imports nothing from the doctor.
gpu.py sends this file's text plus a call to sample(...) through doctor.runner.run_python."""
import json
import time


def _try(fn, *args):
    """(value, None) or (None, "ErrorName"); NOT_SUPPORTED and friends become 'unknown'."""
    try:
        return fn(*args), None
    except Exception as exc:  # NVMLError subclasses, AttributeError on old bindings
        return None, type(exc).__name__


def sample(marker, pids, duration_s, n):
    out = {"available": False, "driver": None, "devices": [], "unavailable": [], "errors": {}}
    try:
        import pynvml as nv
    except Exception as exc:
        out["unavailable"].append("NVML bindings (nvidia-ml-py) not importable: %s" % type(exc).__name__)
        print(marker + json.dumps(out))
        return
    try:
        nv.nvmlInit()
    except Exception as exc:
        out["unavailable"].append("NVML could not start: %s" % (str(exc) or type(exc).__name__))
        print(marker + json.dumps(out))
        return
    out["available"] = True
    out["driver"], _ = _try(nv.nvmlSystemGetDriverVersion)
    count, err = _try(nv.nvmlDeviceGetCount)
    reasons_fn = getattr(nv, "nvmlDeviceGetCurrentClocksEventReasons", None) or \
        getattr(nv, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    handles = []
    for i in range(count or 0):
        h, err = _try(nv.nvmlDeviceGetHandleByIndex, i)
        if h is None:
            out["unavailable"].append("GPU %d: no handle (%s)" % (i, err))
            continue
        d = {"index": i, "util": [], "mem_util": [], "power_mw": [], "sm_clock_mhz": [],
             "pcie_tx_kbs": [], "pcie_rx_kbs": [], "processes": []}
        name, _ = _try(nv.nvmlDeviceGetName, h)
        d["name"] = name.decode() if isinstance(name, bytes) else (name or "")
        d["uuid"], _ = _try(nv.nvmlDeviceGetUUID, h)
        d["power_limit_mw"], _ = _try(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        d["sm_clock_max_mhz"], _ = _try(nv.nvmlDeviceGetMaxClockInfo, h, nv.NVML_CLOCK_SM)
        d["pcie_gen"], _ = _try(nv.nvmlDeviceGetCurrPcieLinkGeneration, h)
        d["pcie_gen_max"], _ = _try(nv.nvmlDeviceGetMaxPcieLinkGeneration, h)
        d["pcie_width"], _ = _try(nv.nvmlDeviceGetCurrPcieLinkWidth, h)
        d["pcie_width_max"], _ = _try(nv.nvmlDeviceGetMaxPcieLinkWidth, h)
        d["pstate"], _ = _try(nv.nvmlDeviceGetPerformanceState, h)
        d["temperature_c"], _ = _try(nv.nvmlDeviceGetTemperature, h, nv.NVML_TEMPERATURE_GPU)
        mem, _ = _try(nv.nvmlDeviceGetMemoryInfo, h)
        if mem is not None:
            d["memory_used"], d["memory_total"] = int(mem.used), int(mem.total)
        procs, perr = _try(nv.nvmlDeviceGetComputeRunningProcesses, h)
        if procs is None:
            out["errors"].setdefault("processes", perr)
        for p in procs or []:
            used = getattr(p, "usedGpuMemory", None)
            d["processes"].append({"pid": int(p.pid), "used_memory": int(used) if used is not None else None})
        handles.append((h, d))
        out["devices"].append(d)
    n = max(1, int(n))
    step = duration_s / n
    for k in range(n):
        t0 = time.monotonic()
        for h, d in handles:
            u, err = _try(nv.nvmlDeviceGetUtilizationRates, h)
            if u is not None:
                d["util"].append(int(u.gpu))
                d["mem_util"].append(int(u.memory))
            else:
                out["errors"].setdefault("utilization", err)
            pw, err = _try(nv.nvmlDeviceGetPowerUsage, h)
            if pw is not None:
                d["power_mw"].append(int(pw))
            else:
                out["errors"].setdefault("power", err)
            clk, err = _try(nv.nvmlDeviceGetClockInfo, h, nv.NVML_CLOCK_SM)
            if clk is not None:
                d["sm_clock_mhz"].append(int(clk))
            if reasons_fn is not None:
                r, err = _try(reasons_fn, h)
                if r is not None:
                    d["clock_event_reasons"] = int(r)
                else:
                    out["errors"].setdefault("clock_event_reasons", err)
            if k == n - 1 or k == 0:  # each PCIe read takes ~20 ms: first and last sample only
                tx, err = _try(nv.nvmlDeviceGetPcieThroughput, h, nv.NVML_PCIE_UTIL_TX_BYTES)
                rx, _ = _try(nv.nvmlDeviceGetPcieThroughput, h, nv.NVML_PCIE_UTIL_RX_BYTES)
                if tx is not None:
                    d["pcie_tx_kbs"].append(int(tx))
                if rx is not None:
                    d["pcie_rx_kbs"].append(int(rx))
                if tx is None:
                    out["errors"].setdefault("pcie_throughput", err)
        left = step - (time.monotonic() - t0)
        if left > 0 and k < n - 1:
            time.sleep(left)
    try:
        nv.nvmlShutdown()
    except Exception:
        pass
    print(marker + json.dumps(out))
