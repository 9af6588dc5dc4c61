"""The host around the GPU: /dev/shm in containers (FM-14), host RAM and swap (FM-18), multi-GPU
launches with an Unsloth that forces one GPU and NCCL P2P on consumer cards (FM-20), and the
tokenizers fork deadlock with dataset_num_proc > 1 (FM-13). RAM under WSL2 is the wsl check's."""
from __future__ import annotations

from typing import Optional

from checks import check
from doctor.knowledge import load
from checks._machine import UNSLOTH_UPGRADE, gpus
from doctor.units import GIB, gib
from checks._models import SMALL_HOST_RAM, checkpoint_bytes, is_prequantized, load_ram_need
from doctor.knowledge.versions import below, driver_below
from doctor.facts import Facts
from doctor.findings import ConfigChange, Finding, Severity

SHM = "host.shm-small"
SHM_FULL = "host.shm-full"
IOMMU = "host.iommu-p2p"
LINKS_IOMMU = ["https://docs.nvidia.com/deeplearning/nccl/user-guide/docs/troubleshooting.html#pci-access-control-services-acs",
               "https://github.com/NVIDIA/nccl/issues/199"]
RAM = "host.low-ram"
MULTI_GPU = "host.unsloth-forces-single-gpu"
P2P = "host.nccl-p2p-consumer-gpus"
TOKENIZERS = "host.tokenizers-parallelism"

SHM_FLOOR = 1 * GIB
MIB = 1024 ** 2
# /dev/shm a run needs free: each DataLoader worker holds prefetch_factor (2) batches there; each
# dataset map process a little (semaphores, shared arrays). Rough by design: the finding fires only
# well below it.
SHM_PER_WORKER = 256 * MIB
SHM_PER_PROC = 32 * MIB
AVAILABLE_FLOOR = 2 * GIB

LINKS_SHM = ["https://github.com/pytorch/pytorch/issues/5040", "https://github.com/facebookresearch/detectron2/issues/384"]
LINK_RAM = "https://github.com/huggingface/autotrain-advanced/issues/136"
LINKS_NCCL = ["https://github.com/NVIDIA/nccl-tests/issues/117", "https://github.com/huggingface/accelerate/issues/3380"]
LINK_MULTI = "https://github.com/unslothai/unsloth/issues/2435"
LINKS_TOKENIZERS = ["https://github.com/huggingface/datasets/issues/620",
                    "https://github.com/huggingface/transformers/issues/19702"]


@check(id="host", title="host resources and launch setup: /dev/shm, RAM, multi-GPU, tokenizers parallelism",
       finding_ids=(SHM, SHM_FULL, RAM, MULTI_GPU, P2P, IOMMU, TOKENIZERS), order=80)
def host(facts: Facts, config=None) -> list[Finding]:
    out = []
    for fn in (_shm, _shm_full, _ram, _multi_gpu, _p2p, _iommu, _tokenizers):
        f = fn(facts, config)
        if f is not None:
            out.append(f)
    return out


def _shm(facts: Facts, config) -> Optional[Finding]:
    p = facts.platform
    if not p.container or p.shm_total is None or p.shm_total >= SHM_FLOOR:
        return None
    workers = config.dataloader_num_workers if config is not None else None
    if config is not None and not workers:
        return None             # no DataLoader workers (the HF default): /dev/shm is not used
    uses = bool(workers and workers > 0)
    return Finding(
        id=SHM, severity=Severity.ERROR if uses else Severity.INFO,
        title=f"/dev/shm is {gib(p.shm_total)} in this {p.container} container"
              + (f" and dataloader_num_workers={workers}" if uses else ""),
        why="DataLoader workers hand batches to the main process through /dev/shm; when it is this small "
            "they die with 'Unexpected bus error encountered in worker ... insufficient shared memory "
            "(shm)' or the loader hangs. Docker's default is tiny.",
        remediation=("Use dataloader_num_workers=0 (tokenised text is cheap to load), or restart the "
                     "container with a larger --shm-size (e.g. 8g) or `-v /dev/shm:/dev/shm`."
                     if uses else
                     "Only matters with dataloader_num_workers > 0; then restart the container with "
                     "--shm-size=8g (or keep workers at 0)."),
        commands=["df -h /dev/shm", "docker run --shm-size=8g ...   # or --ipc=host"],
        evidence={"platform.container": p.container, "platform.shm_total": gib(p.shm_total),
                  "config.dataloader_num_workers": workers},
        config_changes=[ConfigChange("dataloader_num_workers", 0, "no worker processes, so no /dev/shm traffic")]
        if uses else [],
        links=LINKS_SHM, failure_mode="FM-14", confidence=0.85 if uses else 0.6, fix_cost=1)


def _shm_full(facts: Facts, config) -> Optional[Finding]:
    """/dev/shm large enough but nearly full (leftovers of killed runs, another job): free space is
    what the workers get, not the size."""
    p = facts.platform
    if p.shm_total is None or p.shm_free is None or p.shm_total < SHM_FLOOR:
        return None             # unknown, or small: host.shm-small says that
    workers = (config.dataloader_num_workers or 0) if config is not None else 0
    procs = (config.dataset_num_proc or 0) if config is not None else 0
    need = workers * SHM_PER_WORKER + (procs if procs > 1 else 0) * SHM_PER_PROC
    if need and p.shm_free < need:
        severity = Severity.ERROR
    elif p.shm_free < min(64 * MIB, p.shm_total // 10):
        severity = Severity.WARNING     # nearly full, whatever the config
    else:
        return None
    return Finding(
        id=SHM_FULL, severity=severity,
        title=f"/dev/shm has {gib(p.shm_free)} free of {gib(p.shm_total)}"
              + (f"; dataloader_num_workers={workers}, dataset_num_proc={procs} want about {gib(need)}" if need else ""),
        why="DataLoader workers pass batches through /dev/shm and dataset map workers keep their semaphores there; "
            "its size does not help when it is full. Workers then die with 'No space left on device' or 'bus "
            "error ... insufficient shared memory (shm)', or the loader hangs. Files left by killed runs "
            "(torch_*, /dev/shm/sem.*) are the usual cause.",
        remediation="Free /dev/shm (delete leftovers of dead runs), or use fewer DataLoader workers.",
        commands=["df -h /dev/shm", "ls -la /dev/shm | head", "rm /dev/shm/torch_*   # only when no run is alive"],
        evidence={"platform.shm_total": gib(p.shm_total), "platform.shm_free": gib(p.shm_free),
                  "config.dataloader_num_workers": workers or None, "config.dataset_num_proc": procs or None},
        config_changes=[ConfigChange("dataloader_num_workers", 0, "no worker processes, so no /dev/shm traffic")]
        if workers and severity is Severity.ERROR else [],
        links=LINKS_SHM, failure_mode="FM-14", confidence=0.75, fix_cost=1)


def _ram(facts: Facts, config) -> Optional[Finding]:
    p = facts.platform
    if p.is_wsl or not p.ram_total:
        return None             # WSL2's VM cap is checks/wsl.py's memory-cap finding
    swap = p.swap_total or 0
    need = load_ram_need(config)
    evidence = {"platform.ram_total": gib(p.ram_total), "platform.swap_total": gib(swap),
                "platform.ram_available": gib(p.ram_available)}
    if need is not None and p.ram_total + swap < need:
        ckpt = checkpoint_bytes(config)
        prequant = is_prequantized(config)
        return Finding(
            id=RAM, severity=Severity.WARNING,
            title=f"{gib(p.ram_total)} RAM + {gib(swap)} swap is tight for loading {config.model_name} "
                  f"(about {gib(need)} wanted)",
            why=f"Loading reads the {'4-bit' if prequant else 'bf16'} checkpoint (about {gib(ckpt)}) through "
                "host RAM before it reaches the GPU; running short ends in the OOM killer ('Killed', exit 137).",
            remediation="Add swap, close other memory users, or load a pre-quantised '-bnb-4bit' checkpoint; "
                        "keep dataset_num_proc small.",
            commands=["free -h"],
            evidence={**evidence, "config.model_name": config.model_name, "checkpoint size": gib(ckpt)},
            links=[LINK_RAM], failure_mode="FM-18", confidence=0.6, fix_cost=2)
    if p.ram_available is not None and p.ram_available < AVAILABLE_FLOOR:
        return Finding(
            id=RAM, severity=Severity.WARNING,
            title=f"only {gib(p.ram_available)} of host RAM is available right now",
            why="Model loading, tokenisation workers and pinned buffers all need host RAM; with this little "
                "free the OOM killer ends the run ('Killed', exit 137) or swapping makes it crawl.",
            remediation="Stop other memory-heavy processes (an earlier training run, notebooks) before training.",
            commands=["free -h", "ps aux --sort=-rss | head"],
            evidence=evidence, links=[LINK_RAM], failure_mode="FM-18", confidence=0.7, fix_cost=1)
    if need is None and p.ram_total < SMALL_HOST_RAM:
        return Finding(
            id=RAM, severity=Severity.INFO,
            title=f"this machine has {gib(p.ram_total)} of RAM",
            why="Loading a model in full precision peaks near its bf16 size in host RAM (about 16 GiB for 8B); "
                "smaller machines get OOM-killed while loading.",
            remediation="Prefer pre-quantised '-bnb-4bit' checkpoints, and add swap.",
            commands=["free -h"], evidence=evidence, links=[LINK_RAM], failure_mode="FM-18",
            confidence=0.5, fix_cost=2)
    return None


def _world_size(env: dict[str, str]) -> Optional[int]:
    try:
        return int(env["WORLD_SIZE"]) if "WORLD_SIZE" in env else None
    except ValueError:
        return None


def _multi_gpu(facts: Facts, config) -> Optional[Finding]:
    world = _world_size(facts.env)
    unsloth = facts.version("unsloth")
    if not unsloth or not world or world < 2:
        return None
    row = next((r for r in load("unsloth_behaviour")["forces_single_gpu"] if below(unsloth, r["unsloth_below"])), None)
    if row is None:
        return None
    return Finding(
        id=MULTI_GPU, severity=Severity.ERROR,
        title=f"a {world}-process launch with unsloth {unsloth}, which forces a single GPU",
        why="This Unsloth rewrites CUDA_VISIBLE_DEVICES to the first GPU at import ('Unsloth currently does "
            "not support multi GPU setups'), so every rank lands on one GPU: out of memory, or ranks "
            "waiting on each other until the NCCL watchdog fires.",
        remediation="Run a single process (python train.py), or upgrade Unsloth to a release with multi-GPU "
                    "(DDP) support.",
        commands=[UNSLOTH_UPGRADE],
        evidence={"env.WORLD_SIZE": facts.env.get("WORLD_SIZE"), "packages.unsloth.version": unsloth},
        links=[LINK_MULTI], failure_mode="FM-20", confidence=0.85, fix_cost=2)


def _p2p_rule(facts: Facts, devs) -> Optional[dict]:
    """The accelerate/axolotl row (checks/data/p2p_rules.json) that applies to these GPUs, if any."""
    for row in load("p2p_rules")["disable_p2p"]:
        if len(devs) < row["min_gpus"] or (row["max_gpus"] is not None and len(devs) > row["max_gpus"]):
            continue
        if not any(row["name_contains"] in (g.name or "") for g in devs):
            continue
        if row["driver_below"] and not driver_below(facts.nvidia.driver_version, row["driver_below"]):
            continue
        return row
    return None


def _p2p(facts: Facts, config) -> Optional[Finding]:
    devs = gpus(facts)
    markers = load("gpu_arch")["consumer_name_markers"]["markers"]
    if len(devs) < 2 or "NCCL_P2P_DISABLE" in facts.env:
        return None
    rule = _p2p_rule(facts, devs)
    if rule is None and not all(any(m.lower() in (g.name or "").lower() for m in markers) for g in devs):
        return None
    blocked = {pair: st for pair, st in facts.nvidia.p2p.items() if st != "ok"}
    why = ("On GeForce cards, NCCL's P2P transport over PCIe is a known cause of all-reduce hangs that end "
           "in 'Watchdog caught collective operation timeout'.")
    if rule is not None:
        why += (f" accelerate/axolotl turn P2P and InfiniBand off for this GPU ({rule['name_contains']}"
                + (f", driver below {rule['driver_below']}" if rule["driver_below"] else "") + ") before launching.")
    return Finding(
        id=P2P, severity=Severity.WARNING if rule is not None else Severity.INFO,
        title=f"{len(devs)} {'GPUs' if rule else 'consumer GPUs'} ({devs[0].name}): NCCL peer-to-peer can hang "
              "multi-GPU runs",
        why=why,
        remediation="If a multi-GPU run hangs in a collective, disable P2P for the launch"
                    + (" (and InfiniBand, as accelerate does)" if rule else "")
                    + (", or update the driver" if rule and rule["driver_below"] else "") + ".",
        commands=["export NCCL_P2P_DISABLE=1"] + (["export NCCL_IB_DISABLE=1"] if rule else []) + ["nvidia-smi topo -m"],
        evidence={"gpus": [g.name for g in devs], "env.NCCL_P2P_DISABLE": None,
                  "nvidia.driver_version": facts.nvidia.driver_version,
                  **({"nvidia.p2p (not ok)": blocked} if blocked else {})},
        links=LINKS_NCCL + ([rule["source"].split(" ")[0]] if rule else []), failure_mode="FM-20",
        confidence=0.7 if rule else 0.5, fix_cost=1)


def _iommu(facts: Facts, config) -> Optional[Finding]:
    devs = gpus(facts)
    if len(devs) < 2 or facts.platform.iommu != "on" or "NCCL_P2P_DISABLE" in facts.env:
        return None
    return Finding(
        id=IOMMU, severity=Severity.INFO,
        title=f"the IOMMU is on (not passthrough) with {len(devs)} GPUs: peer-to-peer traffic may crawl or hang",
        why="With the IOMMU translating DMA, PCIe Access Control Services send GPU-to-GPU transfers up to the root "
            "complex; NCCL's P2P transport then runs at a fraction of its speed, which looks like a hang in the "
            "first all-reduce (NVIDIA's NCCL troubleshooting guide asks for ACS off on bare metal).",
        remediation="If a multi-GPU run stalls in its first collective, boot with iommu=pt (or disable ACS in the "
                    "BIOS), or set NCCL_P2P_DISABLE=1 to use shared memory instead.",
        commands=["cat /proc/cmdline", "sudo lspci -vvv | grep -i acsctl", "export NCCL_P2P_DISABLE=1"],
        evidence={"platform.iommu": facts.platform.iommu, "gpus": [g.name for g in devs],
                  "nvidia.p2p": facts.nvidia.p2p or None},
        links=LINKS_IOMMU, failure_mode="FM-20", confidence=0.5, fix_cost=2)


def _tokenizers(facts: Facts, config) -> Optional[Finding]:
    if config is None or (config.dataset_num_proc or 0) <= 1 or "TOKENIZERS_PARALLELISM" in facts.env:
        return None
    forks = facts.platform.system == "Linux"    # Linux and WSL fork; Windows/macOS spawn
    return Finding(
        id=TOKENIZERS, severity=Severity.WARNING if forks else Severity.INFO,
        title=f"dataset_num_proc={config.dataset_num_proc} with TOKENIZERS_PARALLELISM unset",
        why="A fast tokenizer that already used its thread pool, then fork: the map workers can deadlock "
            "('The current process just got forked, after parallelism has already been used'), and the "
            "'Map (num_proc=N)' bar stops.",
        remediation="Set TOKENIZERS_PARALLELISM=false before Python starts (or tokenise with num_proc=1 once "
                    "and cache it).",
        commands=["export TOKENIZERS_PARALLELISM=false"],
        evidence={"config.dataset_num_proc": config.dataset_num_proc, "env.TOKENIZERS_PARALLELISM": None,
                  "platform.system": facts.platform.system},
        links=LINKS_TOKENIZERS, failure_mode="FM-13", confidence=0.6, fix_cost=1)
