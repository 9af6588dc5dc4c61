"""Exit codes, one place. Scripts and CI jobs branch on these, so they never change meaning."""

OK = 0                  # nothing at error or critical severity
UNHEALTHY = 1           # at least one error or critical finding (or a stall/crash diagnosed)
USAGE = 2               # bad command-line usage (typer's own code for usage errors)
NO_SUCH_PROCESS = 3     # attach: the pid does not exist
PERMISSION_DENIED = 4   # attach: not allowed to trace the pid (ptrace_scope, CAP_SYS_PTRACE)
NOT_PYTHON = 5          # attach: the pid is not a Python process
PROCESS_EXITED = 6      # attach: the process exited while being sampled
PYSPY_MISSING = 7       # attach: no py-spy binary found
CONFIG_INVALID = 8      # a training script/YAML/JSON that cannot be read or parsed
FACTS_INVALID = 9       # a --facts file or bundle that cannot be read
NO_GPU = 10             # smoke: no CUDA GPU usable, so no kernel was run
INTERNAL = 70           # a bug in the doctor itself (one line, traceback with DOCTOR_DEBUG=1)
INTERRUPTED = 130       # Ctrl-C or SIGTERM
BROKEN_PIPE = 141       # the reader of stdout closed it early (`doctor checks --json | head`): quiet

MEANINGS = {
    OK: "healthy: no error or critical findings",
    UNHEALTHY: "at least one error or critical finding",
    USAGE: "bad command-line usage",
    NO_SUCH_PROCESS: "no process with that pid",
    PERMISSION_DENIED: "not permitted to trace that process",
    NOT_PYTHON: "that process is not running Python",
    PROCESS_EXITED: "the process exited while it was being sampled",
    PYSPY_MISSING: "py-spy is not installed",
    CONFIG_INVALID: "the training script or config could not be parsed",
    FACTS_INVALID: "the facts file or bundle could not be read",
    NO_GPU: "smoke: no CUDA GPU is usable, nothing was run",
    INTERNAL: "internal error in the doctor",
    INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
    BROKEN_PIPE: "the output pipe was closed by its reader",
}


class DoctorError(Exception):
    """An expected failure with a one-line message and a distinct exit code (never a traceback)."""

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C (so every cleanup path runs) but telling which signal it was."""
