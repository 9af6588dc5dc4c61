"""The classifier on hand-built snapshots shaped like py-spy's output, for the stacks we cannot
produce on a CPU box (CUDA syncs, NCCL, torch.compile, Unsloth, checkpoint I/O) and for the GPU
refinement. Live and recorded processes are covered in test_attach_live/test_attach_replay."""
from __future__ import annotations

import pytest

from attach_helpers import SITE, frame, gpu_sample, native, process, snapshot, thread
from doctor.attach import signatures as sig
from doctor.attach.api import diagnose_snapshot
from doctor.attach.gpu import gpu_state
from doctor.attach.threads import wants_native
from doctor.attach.snapshot import KernelWait

TRAIN = "/home/u/train.py"
TORCH = SITE + "torch/"


def _item_stack():
    return [frame("train_step", TRAIN, 41), frame("main", TRAIN, 60), frame("<module>", TRAIN, 70)]


def _stuck(frames, n=3, **kw):
    return [[thread(frames, **kw)] for _ in range(n)]


def _cuda_sync_snapshot(gpu=None, native_dump=None):
    p = process(500, _stuck(_item_stack()), cpu=99.0, state="R",
                source={f"{TRAIN}:41": "loss_value = loss.item()"}, native_dump=native_dump)
    return snapshot(p, gpu=gpu)


@pytest.mark.parametrize("util,power,severity,words,fm", [
    (98, 610, "info", "GPU busy, host waiting", "FM-04"),
    (0, 70, "error", "GPU idle, host waiting", "FM-04"),
    (100, 90, "error", "GPU spinning, host waiting", "FM-20"),
])
def test_cuda_sync_refined_by_gpu_state(util, power, severity, words, fm):
    report = diagnose_snapshot(_cuda_sync_snapshot(gpu_sample(util, power, pids=[500])))
    top = report.findings[0]
    assert report.cause == "cuda-sync-wait"
    assert top.severity.value == severity and top.failure_mode == fm
    assert report.situation == words
    assert "loss.item" not in top.title and "train_step (train.py:41)" in top.title


def test_cuda_sync_without_gpu_telemetry_is_a_warning_not_a_verdict():
    report = diagnose_snapshot(_cuda_sync_snapshot())
    assert report.cause == "cuda-sync-wait"
    assert report.findings[0].severity.value == "warning"
    assert report.situation == "GPU not visible, host waiting"


def test_native_frames_confirm_a_sync_the_python_line_does_not_show():
    """A line without .item() but a native cuStreamSynchronize under it: still a CUDA sync."""
    py = [frame("log_metrics", TRAIN, 12), frame("<module>", TRAIN, 70)]
    nat = {"pid": 500, "thread_id": 100000, "thread_name": "MainThread", "os_thread_id": 100, "active": True,
           "owns_gil": False, "frames": [native("cuStreamSynchronize"), native("0x7f0000001234"),
                                         native("at::native::_local_scalar_dense_cuda", "/x/libtorch_cuda.so")] + py}
    p = process(500, _stuck(py), cpu=100.0, state="R", native_dump=[nat])
    report = diagnose_snapshot(snapshot(p))
    assert report.cause == "cuda-sync-wait"
    main = report.processes[0].threads[0]
    assert main.native_frames[0] == "cuStreamSynchronize (libcuda.so.1)"
    assert all(not f.startswith("0x") for f in main.native_frames)


def test_trainer_nan_filter_sync_point():
    stack = [frame("Trainer._maybe_log_save_evaluate", SITE + "transformers/trainer.py", 3050),
             frame("Trainer._inner_training_loop", SITE + "transformers/trainer.py", 2600),
             frame("Trainer.train", SITE + "transformers/trainer.py", 2200), frame("<module>", TRAIN, 90)]
    report = diagnose_snapshot(snapshot(process(500, _stuck(stack), cpu=100.0, state="R")))
    assert report.cause == "cuda-sync-wait"


def _rank(pid, rank, stack, cpu=100.0):
    return process(pid, _stuck(stack), ppid=10, cpu=cpu, role=f"rank {rank}", rank=rank, world_size=2)


ALL_REDUCE = [frame("all_reduce", TORCH + "distributed/distributed_c10d.py", 2800),
              frame("_all_reduce_grads", TRAIN, 30), frame("<module>", TRAIN, 70)]
SAVE = [frame("_save", TORCH + "serialization.py", 900), frame("save", TORCH + "serialization.py", 850),
        frame("Trainer._save_checkpoint", SITE + "transformers/trainer.py", 3200), frame("<module>", TRAIN, 70)]


def _launcher():
    p = process(10, _stuck([frame("_poll", TORCH + "distributed/elastic/agent/server/api.py", 900)]), role="launcher")
    p.cmdline = ["/usr/bin/python", "/usr/bin/torchrun", "--nproc-per-node=2", "train.py"]
    return p


def test_nccl_desync_names_the_rank_that_is_elsewhere():
    report = diagnose_snapshot(snapshot(_launcher(), _rank(11, 0, ALL_REDUCE), _rank(12, 1, SAVE, cpu=5.0),
                                        target=10))
    assert report.cause == "nccl-collective"
    top = report.findings[0]
    assert top.failure_mode == "FM-20"
    assert "rank 1 (pid 12) is not in the collective: checkpoint-io" in top.title
    roles = {p.pid: p.role for p in report.processes}
    assert roles == {10: "launcher", 11: "rank 0", 12: "rank 1"}


def test_all_ranks_in_the_same_collective():
    report = diagnose_snapshot(snapshot(_launcher(), _rank(11, 0, ALL_REDUCE), _rank(12, 1, ALL_REDUCE), target=10))
    assert report.cause == "nccl-collective"
    assert "all 2 ranks wait in the same collective" in report.findings[0].title


def test_pin_memory_thread_refines_a_dataloader_wait():
    main = [frame("Condition.wait", "/usr/lib/python3.12/threading.py", 355),
            frame("Queue.get", "/usr/lib/python3.12/queue.py", 180),
            frame("_MultiProcessingDataLoaderIter._try_get_data", TORCH + "utils/data/dataloader.py", 1133),
            frame("_MultiProcessingDataLoaderIter._get_data", TORCH + "utils/data/dataloader.py", 1294),
            frame("<module>", TRAIN, 70)]
    pin = [frame("pin_memory", TORCH + "utils/data/_utils/pin_memory.py", 70),
           frame("_pin_memory_loop", TORCH + "utils/data/_utils/pin_memory.py", 50)]
    samples = [[thread(main), thread(pin, name="Thread-2 (_pin_memory_loop)", tid=101)] for _ in range(3)]
    report = diagnose_snapshot(snapshot(process(500, samples)))
    assert report.cause == "pin-memory-thread"
    assert report.findings[0].config_changes[0].setting == "dataloader_pin_memory"
    assert "thread Thread-2 (_pin_memory_loop) is stuck in pin_memory" in report.findings[0].title


def test_tokenizer_deadlock_in_a_forked_datasets_worker():
    main = [frame("iflatmap_unordered", SITE + "datasets/utils/py_utils.py", 1400),
            frame("Dataset.map", SITE + "datasets/arrow_dataset.py", 3100), frame("<module>", TRAIN, 50)]
    child = [frame("PreTrainedTokenizerFast._batch_encode_plus", SITE + "transformers/tokenization_utils_fast.py", 530),
             frame("tokenize", TRAIN, 20), frame("worker", SITE + "multiprocess/pool.py", 125)]
    report = diagnose_snapshot(snapshot(process(500, _stuck(main)), process(501, _stuck(child, tid=200), ppid=500,
                                                                           role="child")))
    assert report.cause == "tokenizer-fork"
    top = report.findings[0]
    assert top.failure_mode == "FM-13" and "TOKENIZERS_PARALLELISM=false" in " ".join(top.commands)
    assert "pid 501" in top.title


def test_datasets_map_with_busy_workers_is_a_warning():
    main = [frame("iflatmap_unordered", SITE + "datasets/utils/py_utils.py", 1400),
            frame("Dataset.map", SITE + "datasets/arrow_dataset.py", 3100), frame("<module>", TRAIN, 50)]
    busy = [[thread([frame("tokenize", TRAIN, 20 + i), frame("worker", SITE + "multiprocess/pool.py", 125)],
                    tid=200, active=True)] for i in range(3)]
    report = diagnose_snapshot(snapshot(process(500, _stuck(main)), process(501, busy, ppid=500, cpu=100, role="child")))
    assert report.cause == "datasets-map"
    assert "pid 501 is busy in tokenize" in report.findings[0].title


def test_compile_while_moving_is_compile_not_busy_python():
    files = ["torch/_inductor/compile_fx.py", "torch/_inductor/codecache.py", "torch/_dynamo/convert_frame.py"]
    samples = [[thread([frame("f%d" % i, TORCH + files[i].split("torch/")[1], 100 + i),
                        frame("forward", TRAIN, 10), frame("<module>", TRAIN, 70)], active=True)] for i in range(3)]
    report = diagnose_snapshot(snapshot(process(500, samples, cpu=100, state="R")))
    assert report.cause == "compile"
    assert report.findings[0].failure_mode == "FM-17"
    assert report.findings[0].severity.value == "warning"


def test_checkpoint_save_in_d_state_keeps_its_cause_and_adds_the_io_finding():
    p = process(500, _stuck(SAVE), state="D", open_files=["/mnt/c/out/checkpoint-500/optimizer.pt"])
    report = diagnose_snapshot(snapshot(p))
    assert report.cause == "checkpoint-io"
    io = next(f for f in report.findings if f.id == "attach.uninterruptible-io")
    assert "/mnt/c/out/checkpoint-500/optimizer.pt" in io.evidence["open files"]


def test_unknown_wait_in_d_state_is_uninterruptible_io():
    p = process(500, _stuck([frame("read_block", TRAIN, 5), frame("<module>", TRAIN, 9)]), state="D")
    assert diagnose_snapshot(snapshot(p)).cause == "uninterruptible-io"


def test_model_load_while_busy():
    samples = [[thread([frame("load_file", SITE + "safetensors/torch.py", 300 + i),
                        frame("_load_pretrained_model", SITE + "transformers/modeling_utils.py", 4000),
                        frame("from_pretrained", SITE + "transformers/modeling_utils.py", 3500),
                        frame("<module>", TRAIN, 5)], active=True)] for i in range(3)]
    report = diagnose_snapshot(snapshot(process(500, samples, cpu=80, state="R")))
    assert report.cause == "model-load" and report.findings[0].failure_mode == "FM-23"


def test_unsloth_offloaded_checkpointing_copy():
    stack = [frame("Unsloth_Offloaded_Gradient_Checkpointer.forward", SITE + "unsloth_zoo/gradient_checkpointing.py", 145),
             frame("Function.apply", TORCH + "autograd/function.py", 575), frame("<module>", TRAIN, 70)]
    report = diagnose_snapshot(snapshot(process(500, _stuck(stack))))
    assert report.cause == "unsloth-offload-copy"
    change = report.findings[0].config_changes[0]
    assert (change.setting, change.value) == ("use_gradient_checkpointing", True)


def test_thread_join_at_exit_names_the_thread_still_running():
    main = [frame("Thread._wait_for_tstate_lock", "/usr/lib/python3.12/threading.py", 1167),
            frame("Thread.join", "/usr/lib/python3.12/threading.py", 1147),
            frame("_shutdown", "/usr/lib/python3.12/threading.py", 1624)]
    uploader = [[thread([frame("upload", SITE + "wandb/sdk/internal/sender.py", 300 + i)], name="wandb-sender",
                        tid=101, active=True)] for i in range(3)]
    samples = [[thread(main)] + uploader[i] for i in range(3)]
    report = diagnose_snapshot(snapshot(process(500, samples)))
    assert report.cause == "thread-join"
    assert "thread wandb-sender is busy" in report.findings[0].title


def test_a_single_sample_still_classifies_a_waiting_thread():
    p = process(500, [[thread([frame("<module>", TRAIN, 3)])]], kernel={"syscall": 230})
    assert diagnose_snapshot(snapshot(p)).cause == "sleeping"


def test_side_findings_swap_throttle_memory():
    p = process(500, _stuck(_item_stack()), cpu=100, state="R", source={f"{TRAIN}:41": "x = loss.item()"},
                swap=3 * 2**30)
    gpu = gpu_sample(99, 650, pids=[500], reasons=0x4 | 0x40, used=int(79.5 * 2**30))
    ids = {f.id for f in diagnose_snapshot(snapshot(p, gpu=gpu)).findings}
    assert {"attach.swapping", "attach.gpu-throttled", "attach.gpu-memory-full"} <= ids


def test_ordinary_power_capping_is_not_throttling():
    p = process(500, _stuck(_item_stack()), cpu=100, state="R", source={f"{TRAIN}:41": "x = loss.item()"})
    ids = {f.id for f in diagnose_snapshot(snapshot(p, gpu=gpu_sample(99, 700, pids=[500], reasons=0x4))).findings}
    assert "attach.gpu-throttled" not in ids


def test_primary_finding_stays_first_even_when_a_side_finding_is_worse():
    samples = [[thread([frame("forward", TORCH + "nn/modules/module.py", 1700 + i), frame("<module>", TRAIN, 9)],
                       active=True)] for i in range(3)]
    p = process(500, samples, cpu=100, state="R", swap=4 * 2**30)
    report = diagnose_snapshot(snapshot(p))
    assert report.cause == "running-normally"
    assert report.findings[0].id == "attach.running-normally"
    assert any(f.id == "attach.swapping" and f.severity.value == "warning" for f in report.findings)


@pytest.mark.parametrize("wait,arch,kind", [
    (KernelWait("S", None, 230), "x86_64", "sleep"),
    (KernelWait("S", None, 115), "aarch64", "sleep"),
    (KernelWait("S", None, 202), "x86_64", "futex"),
    (KernelWait("S", None, 98), "aarch64", "futex"),
    (KernelWait("S", None, 7), "x86_64", "poll"),
    (KernelWait("S", None, 0), "x86_64", "read"),
    (KernelWait("S", None, 61), "x86_64", "wait-child"),
    (KernelWait("S", "futex_wait_queue", None), "riscv64", "futex"),
    (KernelWait("S", "hrtimer_nanosleep", None), "x86_64", "sleep"),
    (KernelWait("R", None, None), "x86_64", "running"),
    (KernelWait("D", "nfs_wait_bit_killable", 0), "x86_64", "io"),
])
def test_kernel_wait_kinds(wait, arch, kind):
    assert sig.table().kernel_kind(wait, arch) == kind


@pytest.mark.parametrize("util,power,expected", [(0, 60, "idle"), (99, 600, "busy"), (100, 80, "spinning"),
                                                  (40, 200, "partial")])
def test_gpu_state_thresholds(util, power, expected):
    state, summary, devs = gpu_state(gpu_sample(util, power, pids=[1]), {1}, sig.load_raw()["gpu_states"])
    assert state == expected and f"util {util}%" in summary and len(devs) == 1


def test_gpu_state_without_nvml():
    from doctor.attach.snapshot import GpuSample

    state, summary, _ = gpu_state(GpuSample(unavailable=["NVML could not start: no driver"]), {1},
                                  sig.load_raw()["gpu_states"])
    assert state == "unknown" and "no driver" in summary


def test_wants_native_only_for_a_still_thread_in_a_c_call_or_unknown_frames():
    stuck_unknown = process(1, _stuck([frame("mystery", TRAIN, 3)]))
    moving = process(2, [[thread([frame("step", TRAIN, i)], active=True)] for i in range(3)], cpu=100)
    sync = process(3, _stuck(_item_stack()), source={f"{TRAIN}:41": "v = loss.item()"})
    loader = process(4, _stuck([frame("_try_get_data", TORCH + "utils/data/dataloader.py", 1)]))
    assert wants_native(stuck_unknown) and wants_native(sync)
    assert not wants_native(moving) and not wants_native(loader)


def test_rank_waiting_in_a_sync_while_its_gpu_spins_is_a_collective_wait():
    """all_reduce is asynchronous: rank 0 sits in the next .item() while the NCCL kernel spins."""
    from doctor.attach.snapshot import GpuDevice, GpuSample

    src = {f"{TRAIN}:41": "loss_value = loss.item()"}
    r0 = process(11, _stuck(_item_stack()), ppid=10, cpu=100, role="rank 0", rank=0, world_size=2, source=src,
                 state="R")
    r1 = _rank(12, 1, [frame("save_checkpoint_slowly", TRAIN, 14), frame("<module>", TRAIN, 30)], cpu=0)
    r1.kernel = [{k: KernelWait("S", None, 230) for k in d} for d in r1.kernel]

    def dev(i, pid, util, watts):
        return GpuDevice(index=i, name="H100", util=[util] * 3, power_mw=[watts * 1000] * 3, power_limit_mw=700_000,
                         processes=[{"pid": pid, "used_memory": 2**30}])
    gpu = GpuSample(available=True, devices=[dev(0, 11, 100, 110), dev(1, 12, 0, 70)])
    report = diagnose_snapshot(snapshot(_launcher(), r0, r1, target=10, gpu=gpu))
    assert report.cause == "nccl-collective"
    assert "rank 1 (pid 12) is not in the collective: sleeping" in report.findings[0].title


def test_still_stack_in_backward_with_cpu_is_training_not_a_hang():
    """Three samples caught the same backward line (a long C++ call, or a starved process) while the
    thread ran: that is training, not an unknown wait."""
    stack = [frame("_engine_run_backward", TORCH + "autograd/graph.py", 979),
             frame("backward", TORCH + "autograd/__init__.py", 395), frame("main", TRAIN, 26)]
    running = process(500, _stuck(stack, active=True), cpu=25.0, state="R")
    assert diagnose_snapshot(snapshot(running)).cause == "running-normally"
    waiting = process(501, _stuck(stack), cpu=0.0)
    assert diagnose_snapshot(snapshot(waiting)).cause == "unknown-wait"


def test_rank_gpu_found_by_local_rank_when_nvml_shows_other_pids():
    """In a container NVML lists host pids: the rank's GPU comes from LOCAL_RANK and CUDA_VISIBLE_DEVICES."""
    from doctor.attach.gpu import rank_device
    from doctor.attach.snapshot import GpuDevice, GpuSample

    def dev(i, util, watts):
        return GpuDevice(index=i, name="H100", uuid=f"GPU-aaaa-{i}", util=[util] * 3, power_mw=[watts * 1000] * 3,
                         power_limit_mw=700_000, processes=[{"pid": 90000 + i, "used_memory": 2**30}])
    gpu = GpuSample(available=True, devices=[dev(0, 0, 70), dev(1, 0, 70), dev(2, 100, 110), dev(3, 0, 70)])
    assert [d.index for d in rank_device(gpu, 1, "3,2")] == [2]
    assert [d.index for d in rank_device(gpu, 0, "GPU-aaaa-3")] == [3]
    assert [d.index for d in rank_device(gpu, 1, None)] == [1]
    assert rank_device(gpu, 2, "0,1") == [] and rank_device(gpu, None, None) == []

    src = {f"{TRAIN}:41": "loss_value = loss.item()"}
    r0 = process(11, _stuck(_item_stack()), ppid=10, cpu=100, role="rank 0", rank=0, local_rank=1, world_size=2,
                 cuda_visible_devices="3,2", source=src, state="R")
    r1 = _rank(12, 1, [frame("save_checkpoint_slowly", TRAIN, 14), frame("<module>", TRAIN, 30)], cpu=0)
    report = diagnose_snapshot(snapshot(_launcher(), r0, r1, target=10, gpu=gpu))
    assert report.cause == "nccl-collective"
