"""`doctor bundle` and `doctor analyze`: a redacted bug-report archive and its issue body, and
today's checks over an old bundle.

    build.py     gather (facts, config, attach, repro, external commands) and write the bundle
    archive.py   the zip writer, the one redaction choke point; reading bundles back
    redact.py    the Redactor: secret patterns, identity, env allowlist (rules in its docstring)
    identity.py  user, home, host and known secret values for the Redactor
    collect.py   pip list/freeze, nvidia-smi, dmesg: bounded commands, failures as notes
    issue.py     the issue body (Unsloth's template), GitHub's size limits, the new-issue URL
    stacks.py    py-spy dumps for the bundle: locals stripped, stacks as text
    analyze.py   `doctor analyze BUNDLE`
"""
