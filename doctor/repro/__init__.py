"""`doctor repro`: a short, faithful copy of the user's training in a watched child process.

api.py (run_repro) drives it: spec.py mirrors the config, child.py trains (child_build.py,
child_faults.py), events.py carries its progress, watchdog.py decides when it is stalled,
diagnose.py says why, render.py and chart.py show it.
"""
