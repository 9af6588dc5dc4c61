"""Renderers: they only format. One envelope (report.envelope) feeds terminal, Markdown and JSON."""
