"""WSL hazards (FM-02, FM-03, FM-06, FM-18, FM-19; WSL1).

With checks/windows.py (sysmem fallback, TDR) these are the likely causes of the reference hang
(unslothai/unsloth#1010: RTX 2080 Ti, WSL2, Unsloth 2024.8, stuck at step 11 with the GPU idle),
and none of them is a setting the folklore fixes (batch 2, grad-accum 4, adamw_8bit) touch:
  pinned host memory exhausted by use_gradient_checkpointing="unsloth" (WSL2 caps pinned memory),
  expandable_segments on WSL (the CUDA VMM calls it makes are refused by GPU-PV),
  /mnt/c (9p) I/O, and the WSL VM's memory cap.
"""
from __future__ import annotations

import re
from typing import Optional

from checks import check
from doctor.knowledge import load
from checks._machine import NVIDIA_WSL_GUIDE, UNSLOTH_UPGRADE, alloc_conf, is_wsl2
from doctor.units import GIB, gib
from checks._models import SMALL_HOST_RAM, checkpoint_bytes, is_prequantized, load_ram_need, model_shape
from doctor.knowledge.versions import below, parse
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity

WSL1 = "wsl.wsl1-no-gpu"
PINNED = "wsl.pinned-memory-offload"
EXPANDABLE = "wsl.expandable-segments"
MOUNT = "wsl.windows-mount-io"
MEMCAP = "wsl.memory-cap"
TELEMETRY = "wsl.telemetry-blind-spots"

LINK_1010 = "https://github.com/unslothai/unsloth/issues/1010"
LINKS_PINNED = ["https://github.com/unslothai/unsloth-zoo/pull/1257",
                "https://github.com/unslothai/unsloth/issues/1744",
                "https://github.com/unslothai/unsloth/issues/1797", NVIDIA_WSL_GUIDE]
LINKS_EXPANDABLE = ["https://github.com/pytorch/pytorch/issues/192330",
                    "https://github.com/unslothai/unsloth/issues/7203"]
LINK_MOUNT = "https://github.com/microsoft/WSL/issues/4197"
LINK_WSLCONFIG = "https://learn.microsoft.com/windows/wsl/wsl-config"
LINKS_TELEMETRY = [NVIDIA_WSL_GUIDE, "https://github.com/microsoft/WSL/issues/7162"]

_WINDOWS_DRIVE = re.compile(r"^/mnt/[a-zA-Z](/|$)")
_CACHE_VARS = ("HF_HOME", "HF_HUB_CACHE", "HF_DATASETS_CACHE", "TRANSFORMERS_CACHE")


@check(id="wsl", title="WSL hazards: WSL1, pinned memory, expandable_segments, /mnt/c, the VM's memory cap",
       finding_ids=(WSL1, PINNED, EXPANDABLE, MOUNT, MEMCAP, TELEMETRY), order=60)
def wsl(facts: Facts, config=None) -> list[Finding]:
    p = facts.platform
    if p.is_wsl and p.wsl_version == 1:
        return [_wsl1(facts)]
    if not is_wsl2(facts):
        return []
    out = [f for f in (_pinned(facts, config), _expandable(facts), _mount(facts, config),
                       _memory_cap(facts, config)) if f is not None]
    out.append(_telemetry(facts))
    return out


def _wsl1(facts: Facts) -> Finding:
    return Finding(
        id=WSL1, severity=Severity.CRITICAL, title="this is WSL1, which has no GPU access",
        why="Only WSL2 passes the GPU through (/dev/dxg); under WSL1 CUDA sees no device at all.",
        remediation="Convert the distribution to WSL2 from Windows (PowerShell), then run the doctor again.",
        commands=["wsl --set-version <distro> 2   # in Windows PowerShell; `wsl -l -v` lists distros",
                  "wsl --set-default-version 2"],
        evidence={"platform.wsl_version": 1, "platform.kernel_release": facts.platform.kernel_release},
        links=[NVIDIA_WSL_GUIDE], failure_mode=None, confidence=0.95, fix_cost=3)


def pinned_buffer_bytes(config) -> Optional[int]:
    """Host pinned buffer of Unsloth's offloaded checkpointing: layers x batch x seq x hidden x 2 B."""
    shape, seq = model_shape(config), config.effective_seq_len
    if shape is None or not seq:
        return None
    from doctor.vram.estimator import offloaded_checkpoint_bytes

    row = load("unsloth_behaviour")["offloaded_checkpoint_pinned_buffer"]
    return offloaded_checkpoint_bytes(shape, config.effective_batch_size * seq) + row["overhead_bytes"]


def _pinned(facts: Facts, config) -> Optional[Finding]:
    if config is None or config.use_gradient_checkpointing != "unsloth":
        return None
    size = pinned_buffer_bytes(config)
    if size is not None:
        estimate = (f"For {config.model_name} at batch {config.effective_batch_size} x "
                    f"{config.effective_seq_len} tokens the buffer is about {gib(size)}, ")
    else:
        estimate = ("The model's shape is unknown to the doctor, so the buffer (layers x batch x seq x "
                    "hidden x 2 bytes; about 1 GiB for Llama 3.1 8B at batch 2 x 2048) cannot be sized; ")
    changes = [ConfigChange("use_gradient_checkpointing", True,
                            "standard checkpointing keeps activations on the GPU and pins almost no host memory")]
    if config.dataloader_pin_memory is not False:
        changes.append(ConfigChange("dataloader_pin_memory", False,
                                    "WSL2 limits pinned memory; the DataLoader's pinned batches compete for it"))
    return Finding(
        id=PINNED, severity=Severity.ERROR,
        title='use_gradient_checkpointing="unsloth" pins host memory, which WSL2 caps',
        why="Unsloth's offloaded checkpointing copies every layer's activations into page-locked (pinned) "
            "host memory. WSL2 limits pinned memory (NVIDIA's WSL guide; roughly 1-2 GB per process per "
            f"unsloth-zoo#1257). {estimate}and running out shows up as 'CUDA error: out of memory' with "
            "VRAM free, or as a stall. Reports #1744 (RTX 2080 Ti), #1797, #338 and #1552 all ran again "
            "with use_gradient_checkpointing=True.",
        remediation="Use standard gradient checkpointing on WSL2 (about 20-30% more VRAM for activations, no "
                    "pinned buffer), and stop the DataLoader from pinning batches; or train on native Linux.",
        evidence={"platform.wsl_version": facts.platform.wsl_version,
                  "config.use_gradient_checkpointing": config.use_gradient_checkpointing,
                  "config.model_name": config.model_name,
                  "config.per_device_train_batch_size": config.per_device_train_batch_size,
                  "config.max_seq_length": config.effective_seq_len,
                  "estimated pinned buffer": gib(size) if size is not None else "unknown (model shape unknown)"},
        config_changes=changes, links=LINKS_PINNED + [LINK_1010], failure_mode="FM-02",
        confidence=0.8, fix_cost=1)


def forced_by_unsloth(facts: Facts) -> Optional[str]:
    """Which installed package sets expandable_segments:True inside the process (approximate by
    version: checks/data/unsloth_behaviour.json), or None."""
    unsloth, zoo, torch = facts.version("unsloth"), facts.version("unsloth-zoo"), facts.version("torch")
    if not unsloth:
        return None
    for row in load("unsloth_behaviour")["forces_expandable_segments"]:
        if row.get("when_zoo_absent") and zoo:
            continue
        have = zoo if row["package"] == "unsloth-zoo" else unsloth
        if have and below(have, row["below"]) and not below(torch, row["min_torch"]):
            return f"{row['package']} {have}"
    return None


def _expandable(facts: Facts) -> Optional[Finding]:
    conf = alloc_conf(facts.env)
    user_true = [var for var, v in conf.items() if v is True]
    user_false = any(v is False for v in conf.values())
    forced = forced_by_unsloth(facts)
    rule = load("unsloth_behaviour")["assigns_alloc_conf_unconditionally"]
    overrides_export = bool(forced) and bool(below(facts.version("unsloth"), rule["unsloth_below"]))
    if not user_true and not (forced and (not user_false or overrides_export)):
        return None
    torch = parse(facts.version("torch"))
    new_name = torch is not None and torch.release[:2] >= (2, 10)
    commands = ["export PYTORCH_CUDA_ALLOC_CONF=expandable_segments:False"]
    if new_name:
        commands.append("export PYTORCH_ALLOC_CONF=expandable_segments:False")
    if forced:
        commands.append(UNSLOTH_UPGRADE)
    who = (f"you set it ({', '.join(user_true)})" if user_true else
           f"{forced} sets PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True inside the process at import "
           "(not visible in the environment; inferred from the version, approximately)")
    remediation = ("Export expandable_segments:False before Python starts"
                   + (" (PYTORCH_ALLOC_CONF too: torch >= 2.10 reads that name)" if new_name else "")
                   + (" (Unsloth sets the variable only when it is absent)" if forced and not overrides_export else "")
                   + ".")
    if forced:
        remediation += " Upgrading unsloth and unsloth_zoo stops them setting it on WSL (unsloth-zoo, Dec 2025)."
    if overrides_export:
        remediation += (f" Unsloth {facts.version('unsloth')} assigns the variable unconditionally at import, so "
                        "the export alone does not win: upgrade, or call torch.cuda.memory._set_allocator_settings("
                        "\"expandable_segments:False\") right after `import unsloth`, before loading the model "
                        "(a private torch API).")
    return Finding(
        id=EXPANDABLE, severity=Severity.WARNING,
        title="expandable_segments is on under WSL2, where its CUDA VMM calls fail",
        why=f"expandable_segments:True makes torch's allocator use cuMemCreate/cuMemMap/cuMemSetAccess, "
            f"which the WSL GPU-PV path rejects: 'CUDA driver error: device not ready', 'unknown error', "
            f"OOM with memory free, or stalls (dmesg: dxgkio_make_resident ... -12). Here {who}. "
            "Unsloth's own later releases strip it on WSL ('Expandable segments does NOT work on WSL').",
        remediation=remediation, commands=commands,
        evidence={"env.PYTORCH_CUDA_ALLOC_CONF": facts.env.get("PYTORCH_CUDA_ALLOC_CONF"),
                  "env.PYTORCH_ALLOC_CONF": facts.env.get("PYTORCH_ALLOC_CONF"),
                  "packages.unsloth.version": facts.version("unsloth"),
                  "packages.unsloth-zoo.version": facts.version("unsloth-zoo"),
                  "torch.version": facts.torch.version or facts.version("torch")},
        links=LINKS_EXPANDABLE + [LINK_1010], failure_mode="FM-03",
        confidence=0.8 if user_true else 0.65, fix_cost=1)


def _on_windows_drive(path: Optional[str]) -> bool:
    return bool(path) and bool(_WINDOWS_DRIVE.match(path))


def _mount(facts: Facts, config) -> Optional[Finding]:
    p = facts.platform
    hits: dict[str, str] = {}
    if p.cwd_on_windows_mount or _on_windows_drive(p.cwd):
        hits["platform.cwd"] = p.cwd or "?"
    for var in _CACHE_VARS:
        if _on_windows_drive(facts.env.get(var)):
            hits[f"env.{var}"] = facts.env[var]
    out_dir = config.output_dir if config is not None else None
    if _on_windows_drive(out_dir):
        hits["config.output_dir"] = out_dir
    if not hits:
        return None
    commands = []
    if "platform.cwd" in hits:
        commands.append('cp -r "$PWD" ~/ && cd ~/"$(basename "$PWD")"')
    if any(k.startswith("env.") for k in hits):
        commands.append("export HF_HOME=~/.cache/huggingface")
    return Finding(
        id=MOUNT, severity=Severity.WARNING,
        title="training files live on a Windows drive (/mnt/...), which WSL2 reads through slow 9p",
        why="Under WSL2, /mnt/c and the other Windows drives are served over the 9p protocol, often 10x "
            "slower than the Linux filesystem: model loading, dataset maps, compile caches and "
            "checkpoint saves can take minutes and look like a hang.",
        remediation="Keep the project, the Hugging Face cache and the outputs under the Linux filesystem "
                    "(~/...) and copy data in." + (" Point output_dir at a Linux path too."
                                                    if "config.output_dir" in hits else ""),
        commands=commands, evidence={**hits, "platform.cwd_filesystem": p.cwd_filesystem},
        links=[LINK_MOUNT], failure_mode="FM-19", confidence=0.85, fix_cost=2)


def _memory_cap(facts: Facts, config) -> Optional[Finding]:
    ram = facts.platform.ram_total
    if not ram:
        return None
    ckpt, need = checkpoint_bytes(config), load_ram_need(config)
    evidence = {"platform.ram_total": gib(ram), "platform.wsl_config_memory": facts.platform.wsl_config_memory}
    commands = ["powershell.exe -NoProfile -Command 'notepad \"$env:USERPROFILE\\.wslconfig\"'",
                "wsl.exe --shutdown   # after saving .wslconfig; reopen the WSL terminal"]
    if ckpt is not None and need is not None:
        if ram >= need:
            return None
        want = -(-need // GIB)
        prequant = is_prequantized(config)
        return Finding(
            id=MEMCAP, severity=Severity.WARNING,
            title=f"the WSL2 VM has {gib(ram)} of RAM; loading {config.model_name} wants about {gib(need)}",
            why=f"Loading reads the {'4-bit' if prequant else 'full-precision (bf16)'} checkpoint (about "
                f"{gib(ckpt)}) through host RAM" + ("" if prequant else ", quantising while it reads")
                + "; WSL2 gets only part of Windows' RAM (50% by default), and running short ends in "
                  "'Killed' (exit 137) or a restarted distro rather than an error.",
            remediation=f"Raise the VM's memory in %UserProfile%\\.wslconfig ([wsl2] memory={want}GB, plus "
                        "swap=), then `wsl --shutdown`."
                        + ("" if prequant else " Or load a pre-quantised '-bnb-4bit' checkpoint, about a "
                                               "quarter of the size."),
            commands=commands,
            evidence={**evidence, "config.model_name": config.model_name, "checkpoint size": gib(ckpt)},
            links=[LINK_WSLCONFIG], failure_mode="FM-18", confidence=0.6, fix_cost=2)
    if ram >= SMALL_HOST_RAM:
        return None
    return Finding(
        id=MEMCAP, severity=Severity.INFO,
        title=f"the WSL2 VM has only {gib(ram)} of RAM",
        why="Loading an 8B model in full precision peaks near its bf16 size (about 16 GiB) in host RAM; "
            "WSL2 gets only part of Windows' RAM by default, and running short ends in 'Killed'.",
        remediation="If loading is killed, raise [wsl2] memory= (and swap=) in %UserProfile%\\.wslconfig, "
                    "then `wsl --shutdown`; or use a pre-quantised '-bnb-4bit' checkpoint.",
        commands=commands, evidence=evidence, links=[LINK_WSLCONFIG], failure_mode="FM-18",
        confidence=0.5, fix_cost=2)


def _telemetry(facts: Facts) -> Finding:
    return Finding(
        id=TELEMETRY, severity=Severity.INFO,
        title="on WSL2, GPU utilisation and per-process GPU memory are not reported",
        why="NVML under WSL2 does not support utilisation or per-process queries (NVIDIA WSL guide 5.2), so "
            "'CUDA inactive' or 0% in nvidia-smi is not proof of a hang. Use memory used/free, power draw, "
            "step timestamps, and `doctor attach <pid>` to see where the process is.",
        remediation="Do not poll nvidia-smi in a tight loop from WSL (it leaks driver memory, "
                    "microsoft/WSL#12756); sample every few seconds at most.",
        evidence={"platform.wsl_version": facts.platform.wsl_version},
        links=LINKS_TELEMETRY, failure_mode="FM-06", confidence=0.9, fix_cost=1)
