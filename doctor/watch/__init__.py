"""`doctor watch -- COMMAND...`: run the user's own training as a child, pass its output through,
and catch a stall or a crash the moment it happens.

instrument/ is loaded inside the child (sitecustomize + the step-report hook), runner.py starts and
watches it (the watchdog is doctor/repro/watchdog.py, shared with `doctor repro`), crash.py reads a
crash from the stderr tail (checks/data/crash_signatures.json), diagnose.py turns the run into
findings, render.py shows the step-time chart and memory curve.

For those who prefer an explicit hook to the automatic one:

    from doctor.watch import DoctorCallback
    trainer = SFTTrainer(..., callbacks=[DoctorCallback()])
"""
from __future__ import annotations

_CALLBACK = None


def __getattr__(name):
    global _CALLBACK
    if name == "DoctorCallback":
        if _CALLBACK is None:
            from transformers import TrainerCallback

            from doctor.watch.instrument import doctor_watch_hook

            _CALLBACK = doctor_watch_hook.make_callback_class(TrainerCallback)
        return _CALLBACK
    raise AttributeError(name)
