"""Demo background worker for conf/app.ini: does a unit of "work" per second and logs it to stdout."""
import os
import signal
import sys
import time

running = True


def stop(signum, frame):
    global running
    running = False


signal.signal(signal.SIGTERM, stop)
wid = os.environ.get("WORKER_ID", "?")
job = 0
while running:
    job += 1
    print(f"{time.strftime('%H:%M:%S')} worker {wid} pid {os.getpid()} finished job {job}", flush=True)
    time.sleep(1)
print(f"worker {wid} stopping after {job} jobs", flush=True)
sys.exit(0)
