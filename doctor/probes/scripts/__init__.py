"""Scripts that probes run in a child interpreter (doctor.probes.child.run_script), never import.

Each defines main(marker): it prints marker + the JSON of what it has learnt so far before every
risky step, with "stage" naming the step about to run (None once done), so a child that hangs or
segfaults still tells the parent how far it got and where it stopped.
"""
