"""`hold PATH`: take a file lock and keep it; `wait PATH`: wait for the same lock (a second job or
rank downloading the same model, or a lock left behind). Prints READY once in position."""
import sys
import time

import filelock

lock = filelock.FileLock(sys.argv[2])
if sys.argv[1] == "hold":
    lock.acquire()
    print("READY", flush=True)
    time.sleep(300)
else:
    print("READY", flush=True)
    lock.acquire()
    print("got it", flush=True)
