"""Renderers: they only format. One Report (doctor.report_model, core) feeds terminal, Markdown and JSON."""
