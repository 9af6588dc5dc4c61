"""`doctor attach PID`: where a training process is stuck, and why.

sampler (py-spy, /proc, NVML) -> Snapshot (plain data, replayable) -> threads + classify (pure, with
checks/data/stack_signatures.json) -> AttachReport -> the shared renderers. Entry point: api.diagnose_pid.
"""
