"""Child script: dlopen libcuda.so.1 the way CUDA does and report which file got mapped."""
import json


def main(marker):
    out = {"stage": "dlopen libcuda.so.1"}
    print(marker + json.dumps(out), flush=True)
    try:
        import ctypes

        ctypes.CDLL("libcuda.so.1")
        with open("/proc/self/maps") as fh:
            out["maps"] = [line for line in fh if "libcuda" in line]
    except OSError as exc:  # not found, wrong architecture, missing dependency
        out["load_error"] = str(exc)
    out["stage"] = None
    print(marker + json.dumps(out), flush=True)
