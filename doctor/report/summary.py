"""The short machine summary shown above the findings (terminal and Markdown share it)."""
from __future__ import annotations

from doctor.facts import Facts
from doctor.units import gib

# The packages a maintainer asks for first (unslothai bug template + threads), in that order.
KEY_PACKAGES = ("torch", "triton", "xformers", "bitsandbytes", "transformers", "trl", "peft",
                "accelerate", "datasets", "unsloth", "unsloth-zoo", "flash-attn", "torchao")


def summary_rows(facts: Facts) -> list[tuple[str, str]]:
    p, t, nv = facts.platform, facts.torch, facts.nvidia
    os_line = p.os_name or p.system or "?"
    if p.is_wsl:
        os_line += f" (WSL{p.wsl_version or ''})"
    elif p.is_windows_native:
        os_line += " (native Windows)"
    if p.container:
        os_line += f" [{p.container}]"
    rows = [("OS", f"{os_line}, kernel {p.kernel_release or '?'}"),
            ("Python", f"{p.python_version or '?'} ({p.machine or '?'})")]
    if nv.gpus:
        for g in nv.gpus:
            cc = ".".join(map(str, g.capability)) if g.capability else "?"
            rows.append((f"GPU {g.index}", f"{g.name} (sm {cc}), {gib(g.memory_free)} free of "
                                           f"{gib(g.memory_total)}"))
    else:
        rows.append(("GPU", "none found" + (f" ({nv.error})" if nv.error else "")))
    drv = nv.driver_version or "?"
    if p.is_wsl and nv.driver_version:
        drv += " (Windows driver)"
    rows.append(("Driver", f"{drv}, supports CUDA {nv.cuda_driver_version or '?'}"))
    if t.importable:
        rows.append(("torch", f"{t.version} (CUDA {t.cuda_version or 'none'}, "
                              f"cuda available: {t.cuda_available})"))
    else:
        rows.append(("torch", "not importable" + (f": {t.error}" if t.error else "")))
    versions = [f"{name} {facts.version(name)}" for name in KEY_PACKAGES[1:] if facts.version(name)]
    rows.append(("Packages", ", ".join(versions) or "none of the training stack"))
    return rows
