"""Child script: import torch and ask it about CUDA. Self-contained (stdlib + torch only)."""
import json
import warnings


def main(marker):
    out = {"stage": None, "errors": []}

    def emit(next_stage):
        out["stage"] = next_stage
        print(marker + json.dumps(out, default=str), flush=True)

    def attempt(stage, fn):
        emit(stage)
        try:
            return fn()
        except Exception as exc:
            out["errors"].append(f"{stage}: {type(exc).__name__}: {exc}")
            return None

    emit("import torch")
    try:
        import torch
    except ModuleNotFoundError as exc:
        if exc.name == "torch":
            out["installed"] = False
        else:
            out["import_error"] = f"{type(exc).__name__}: {exc}"
        emit(None)
        return
    except BaseException as exc:  # SystemExit and friends from a broken install, too
        out["import_error"] = f"{type(exc).__name__}: {exc}"
        emit(None)
        return

    out["version"] = str(getattr(torch, "__version__", "") or "") or None
    version = getattr(torch, "version", None)
    out["cuda_version"] = getattr(version, "cuda", None)
    out["hip_version"] = getattr(version, "hip", None)
    out["cudnn_version"] = attempt("torch.backends.cudnn.version()", lambda: torch.backends.cudnn.version())
    out["arch_list"] = attempt("torch.cuda.get_arch_list()", lambda: list(torch.cuda.get_arch_list())) or []

    def is_available():
        # "The NVIDIA driver on your system is too old" and friends arrive as warnings here.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            available = bool(torch.cuda.is_available())
        messages = [str(w.message).strip() for w in caught if str(w.message).strip()]
        if messages:
            out["init_warning"] = messages[0]
        return available

    out["cuda_available"] = attempt("torch.cuda.is_available()", is_available)
    if not out["cuda_available"]:
        emit(None)
        return

    count = attempt("torch.cuda.device_count()", torch.cuda.device_count) or 0
    out["device_count"] = count
    out["devices"] = []
    for i in range(count):
        props = attempt(f"torch.cuda.get_device_properties({i})", lambda i=i: torch.cuda.get_device_properties(i))
        device = {"index": i}
        if props is not None:
            device.update(name=props.name, capability=[props.major, props.minor],
                          total_memory=int(props.total_memory))
        out["devices"].append(device)
    if count:
        # A functional test: this creates a CUDA context, the step that fails or hangs on a broken driver.
        # Device 0 only: a context costs ~0.5 s per GPU, and NVML reports free memory for all of them.
        mem = attempt("torch.cuda.mem_get_info(0)", lambda: torch.cuda.mem_get_info(0))
        if mem is not None:
            out["devices"][0]["free_memory"] = int(mem[0])

    out["bf16_supported"] = attempt("torch.cuda.is_bf16_supported()", torch.cuda.is_bf16_supported)

    def bf16_native():
        try:
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
        except TypeError:  # torch < 2.3 has no including_emulation: bf16 needs compute capability 8.0
            return torch.cuda.get_device_capability()[0] >= 8

    out["bf16_native"] = attempt("torch.cuda.is_bf16_supported(including_emulation=False)", bf16_native)

    def nccl():
        # The NCCL this torch really loads (the pip nvidia-nccl wheel or a system copy) and its version.
        try:
            import torch.cuda.nccl as torch_nccl
        except ImportError:     # Windows builds have no NCCL
            return
        version = torch_nccl.version()
        out["nccl_version"] = ".".join(map(str, version)) if isinstance(version, tuple) else str(version)
        with open("/proc/self/maps") as fh:
            out["nccl_library"] = next((line.split(None, 5)[5].strip() for line in fh
                                        if "libnccl" in line and len(line.split(None, 5)) == 6), None)

    if count:
        attempt("torch.cuda.nccl.version()", nccl)
    emit(None)
