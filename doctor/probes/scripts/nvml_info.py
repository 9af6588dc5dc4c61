"""Child script: ask NVML (nvidia-ml-py's `pynvml`) about the driver and each GPU. Self-contained.

NVML can segfault or hang (some WSL builds), hence the child. NOT_SUPPORTED and its kin mean
"unknown" (None), not failure; other per-query errors are collected in "errors".
"""
import json

_UNKNOWN_CODES = ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_NO_PERMISSION", "NVML_ERROR_FUNCTION_NOT_FOUND",
                  "NVML_ERROR_NOT_FOUND")


def _text(value):
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def main(marker):
    out = {"stage": None, "errors": []}

    def emit(next_stage):
        out["stage"] = next_stage
        print(marker + json.dumps(out, default=str), flush=True)

    emit("import pynvml")
    try:
        import pynvml as N
    except BaseException as exc:
        out["init_error"] = f"cannot import pynvml (nvidia-ml-py): {type(exc).__name__}: {exc}"
        out["init_error_kind"] = "no-module"
        emit(None)
        return
    unknown = {getattr(N, name) for name in _UNKNOWN_CODES if hasattr(N, name)}

    def query(stage, fn, *args):
        emit(stage)
        try:
            return fn(*args)
        except Exception as exc:
            if getattr(exc, "value", None) not in unknown:
                out["errors"].append(f"{stage}: {exc}")
            return None

    emit("nvmlInit()")
    try:
        N.nvmlInit()
    except Exception as exc:
        # LibraryNotFound / DriverNotLoaded: no usable driver. Others: the driver is there but broken.
        out["init_error"] = f"{type(exc).__name__}: {exc}"
        out["init_error_kind"] = type(exc).__name__
        emit(None)
        return
    out["driver_version"] = _text(query("nvmlSystemGetDriverVersion()", N.nvmlSystemGetDriverVersion))
    out["cuda_driver_version"] = query("nvmlSystemGetCudaDriverVersion()", N.nvmlSystemGetCudaDriverVersion)
    out["nvml_version"] = _text(query("nvmlSystemGetNVMLVersion()", N.nvmlSystemGetNVMLVersion))
    count = query("nvmlDeviceGetCount()", N.nvmlDeviceGetCount) or 0
    out["gpus"] = []
    handles = {}
    for i in range(count):
        handle = query(f"nvmlDeviceGetHandleByIndex({i})", N.nvmlDeviceGetHandleByIndex, i)
        handles[i] = handle
        gpu = {"index": i}
        out["gpus"].append(gpu)
        if handle is None:
            continue

        def ask(call, *args):
            fn = getattr(N, call, None)
            return None if fn is None else query(f"{call}({i})", fn, handle, *args)

        gpu["name"] = _text(ask("nvmlDeviceGetName"))
        gpu["uuid"] = _text(ask("nvmlDeviceGetUUID"))
        pci = ask("nvmlDeviceGetPciInfo")
        gpu["pci_bus_id"] = _text(getattr(pci, "busId", None)) if pci is not None else None
        cc = ask("nvmlDeviceGetCudaComputeCapability")
        gpu["capability"] = list(cc) if cc is not None else None
        mem = ask("nvmlDeviceGetMemoryInfo")
        if mem is not None:
            gpu.update(memory_total=mem.total, memory_used=mem.used, memory_free=mem.free)
        gpu["display_active"] = ask("nvmlDeviceGetDisplayActive")
        gpu["persistence_mode"] = ask("nvmlDeviceGetPersistenceMode")
        model = ask("nvmlDeviceGetDriverModel")  # [current, pending]; Windows only
        gpu["driver_model"] = model[0] if isinstance(model, (list, tuple)) else model
        limit = ask("nvmlDeviceGetPowerManagementLimit")  # milliwatts
        gpu["power_limit_w"] = limit / 1000.0 if limit is not None else None
        gpu["processes"] = []
        for kind, call in (("compute", "nvmlDeviceGetComputeRunningProcesses"),
                           ("graphics", "nvmlDeviceGetGraphicsRunningProcesses")):
            for proc in ask(call) or []:
                # usedGpuMemory is None under WDDM / WSL: NVML does not know it.
                gpu["processes"].append({"pid": proc.pid, "used_memory": proc.usedGpuMemory, "kind": kind})
    # Peer-to-peer read capability per GPU pair, as NCCL's P2P transport would use it (0 = OK).
    out["p2p"] = {}
    p2p = getattr(N, "nvmlDeviceGetP2PStatus", None)
    for i in range(count):
        for j in range(i + 1, count):
            if p2p is not None and handles.get(i) is not None and handles.get(j) is not None:
                out["p2p"][f"{i}-{j}"] = query(f"nvmlDeviceGetP2PStatus({i},{j})", p2p, handles[i], handles[j],
                                               getattr(N, "NVML_P2P_CAPS_INDEX_READ", 0))
    emit("nvmlShutdown()")
    try:
        N.nvmlShutdown()
    except Exception:
        pass
    emit(None)
