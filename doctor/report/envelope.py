"""The versioned JSON envelope lives with the Report model in core (doctor.report_model, issue 14
move 1); this name stays for the open branches that still import it from here."""
from doctor.report_model import SCHEMA_VERSION, Report  # noqa: F401  (re-export)
