"""Loaded at start-up by every Python process `doctor watch` starts (this folder is prepended to
PYTHONPATH). Installs the step-report hook, then runs the sitecustomize this one shadows, if any.
Never raises: the user's program must run exactly as it would without the doctor."""
try:
    import doctor_watch_hook as _dwh
    _dwh.install()
except Exception:
    pass


def _chain():
    import importlib.util
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        try:
            if not entry or os.path.abspath(entry) == here:
                continue
            spec = importlib.machinery.PathFinder.find_spec("sitecustomize", [entry])
        except Exception:
            continue
        if spec is not None and spec.loader is not None and spec.origin != os.path.abspath(__file__):
            module = importlib.util.module_from_spec(spec)
            sys.modules["sitecustomize"] = module
            spec.loader.exec_module(module)
            return


try:
    import importlib.machinery  # noqa: F401  (used by _chain)
    _chain()
except Exception:
    pass
