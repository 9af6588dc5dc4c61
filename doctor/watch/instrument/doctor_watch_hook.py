"""Step reports from inside the watched training process, to `doctor watch` (the parent).

Loaded by the sitecustomize beside it (the doctor prepends this folder to PYTHONPATH), or by hand
through `from doctor.watch import DoctorCallback`. Standard library only and Python 3.8-compatible:
the user's interpreter may not be the doctor's. Nothing here may ever break the user's program:
every entry point swallows its own failure, and a failure only turns the reports off.

The channel is the file named by DOCTOR_WATCH_EVENTS, in the event format of doctor/repro/events.py
(one JSON object per line, written with one os.write on an O_APPEND descriptor: a local file write
never blocks on the reader, and lines of several processes never interleave). It is bounded: after
MAX_BYTES the hook stops writing and says so in a last event.
"""
import json
import os
import sys
import time

ENV_EVENTS = "DOCTOR_WATCH_EVENTS"
MAX_BYTES = 64 << 20
MARK = "_doctor_watch"            # attribute on our callback: never register it twice on a Trainer

_state = {"fd": None, "pid": None, "written": 0, "off": False}


def emit(kind, **fields):
    """Write one event; never raises, never blocks on the parent."""
    try:
        path = os.environ.get(ENV_EVENTS)
        if not path or _state["off"]:
            return
        pid = os.getpid()
        if _state["fd"] is None or _state["pid"] != pid:       # a forked worker opens its own
            _state["fd"] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            _state["pid"], _state["written"] = pid, 0
        record = dict(kind=kind, t=time.time(), pid=pid, **fields)
        rank = _rank()
        if rank:
            record.update(rank)
        data = (json.dumps(record, default=str) + "\n").encode()
        if _state["written"] + len(data) > MAX_BYTES:
            _state["off"] = True
            data = (json.dumps({"kind": "note", "t": time.time(), "pid": pid,
                                "text": "doctor watch: event budget spent, step reports stopped"}) + "\n").encode()
        os.write(_state["fd"], data)
        _state["written"] += len(data)
    except Exception:
        _state["off"] = True


def _rank():
    """RANK / LOCAL_RANK from a launcher's environment (torchrun, accelerate): which rank reports."""
    out = {}
    for key, name in (("RANK", "rank"), ("LOCAL_RANK", "local_rank")):
        v = os.environ.get(key, "")
        if v.isdigit():
            out[name] = int(v)
    return out


def _memory():
    """CUDA memory without a sync and without initialising CUDA (only when torch already did)."""
    torch = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return {"mem_allocated": torch.cuda.memory_allocated(), "mem_reserved": torch.cuda.memory_reserved(),
                    "mem_peak": torch.cuda.max_memory_allocated()}
    except Exception:
        pass
    return {}


def _host_rss():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except Exception:
        return None


def make_callback_class(base):
    """A TrainerCallback subclass (base = transformers.TrainerCallback) reporting every step."""

    class DoctorCallback(base):
        _doctor_watch = True

        def __init__(self):
            self._t_end = None          # when the previous step ended (or training began)
            self._t_begin = None

        def on_train_begin(self, args, state, control, **kw):
            try:
                self._t_end = time.time()
                emit("phase", phase="training", detail="transformers Trainer")
                emit("info", hook="transformers.Trainer callback", model=type(kw.get("model")).__name__ if kw.get("model") is not None else None,
                     max_steps=getattr(state, "max_steps", None),
                     grad_accum=getattr(args, "gradient_accumulation_steps", None),
                     num_workers=getattr(args, "dataloader_num_workers", None))
            except Exception:
                pass

        def on_step_begin(self, args, state, control, **kw):
            try:
                self._t_begin = time.time()
                emit("step-begin", step=int(state.global_step) + 1)
            except Exception:
                pass

        def on_step_end(self, args, state, control, **kw):
            try:
                now = time.time()
                fields = {"step": int(state.global_step),
                          "duration_s": None if self._t_end is None else now - self._t_end,
                          "data_wait_s": None if (self._t_end is None or self._t_begin is None)
                          else max(0.0, self._t_begin - self._t_end),
                          "host_rss": _host_rss()}
                fields.update(_memory())
                self._t_end = now
                emit("step", **fields)
            except Exception:
                pass

        def on_log(self, args, state, control, logs=None, **kw):
            try:
                logs = logs or {}
                if "loss" in logs or "learning_rate" in logs:
                    emit("loss", step=int(state.global_step), loss=logs.get("loss"), lr=logs.get("learning_rate"))
            except Exception:
                pass

        def on_train_end(self, args, state, control, **kw):
            try:
                emit("phase", phase="finished", detail="")
                emit("done", steps=int(state.global_step))
            except Exception:
                pass

    return DoctorCallback


def _add_callback(trainer, cls):
    try:
        handler = trainer.callback_handler
        if any(getattr(cb, MARK, False) for cb in handler.callbacks):
            return
        trainer.add_callback(cls())
    except Exception as exc:
        emit("note", text="doctor watch: could not add its callback: %s: %s" % (type(exc).__name__, exc))


def patch_trainer(module):
    """Wrap Trainer.__init__ in transformers.trainer so every Trainer (TRL's, Unsloth's) reports."""
    try:
        trainer_cls = module.Trainer
        if getattr(trainer_cls.__init__, MARK, False):
            return
        from transformers.trainer_callback import TrainerCallback
        cls = make_callback_class(TrainerCallback)
        original = trainer_cls.__init__

        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            _add_callback(self, cls)

        setattr(__init__, MARK, True)
        __init__.__wrapped__ = original
        trainer_cls.__init__ = __init__
        for name, phase in LONG_CALLS:
            _wrap_phase(trainer_cls, name, phase)
        emit("note", text="doctor watch: step reports on (transformers Trainer patched)")
        emit("hooked", target="transformers.Trainer")
    except Exception as exc:
        emit("note", text="doctor watch: step reports not available: %s: %s" % (type(exc).__name__, exc))


# Trainer methods that legitimately take longer than a step, between two steps: while one runs the
# watchdog applies its start-up grace (with output/CPU activity) instead of the step deadline.
LONG_CALLS = (("_save_checkpoint", "saving"), ("evaluate", "evaluating"))


def _wrap_phase(cls, name, phase):
    try:
        original = getattr(cls, name, None)
        if original is None or getattr(original, MARK, False):
            return

        def wrapper(self, *args, **kwargs):
            emit("phase", phase=phase, detail=name)
            try:
                return original(self, *args, **kwargs)
            finally:
                emit("phase", phase="training", detail="back from " + name)

        setattr(wrapper, MARK, True)
        wrapper.__wrapped__ = original
        setattr(cls, name, wrapper)
    except Exception:
        pass


class _Finder:
    """A meta-path finder that only notices transformers.trainer being loaded, then patches it."""

    def find_spec(self, name, path=None, target=None):
        if name != "transformers.trainer":
            return None
        try:
            import importlib.machinery
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
                return None
            loader = spec.loader
            original = loader.exec_module

            def exec_module(module):
                original(module)
                patch_trainer(module)

            loader.exec_module = exec_module
            return spec
        except Exception:
            return None


def install():
    """Called by sitecustomize at interpreter start: cheap, never raises."""
    try:
        if not os.environ.get(ENV_EVENTS):
            return
        mod = sys.modules.get("transformers.trainer")
        if mod is not None:
            patch_trainer(mod)
        elif not any(isinstance(f, _Finder) for f in sys.meta_path):
            sys.meta_path.insert(0, _Finder())
        emit("hooked", target="interpreter", argv=list(sys.argv[:8]))
    except Exception:
        pass
