"""No Trainer, no torch: logs to stderr (as logging and tqdm do), goes quiet (no output, no CPU)
twice, then ends with exit code 0."""
import sys
import time

quiet = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
for i in range(2):
    sys.stderr.write(f"working {i}\n")
    sys.stderr.flush()
    time.sleep(quiet)
print("done", flush=True)
