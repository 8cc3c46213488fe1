#!/usr/bin/python3
"""A stand-in service for the shutdown tests and bench/shutdown.

Writes its pid to --pidfile, then waits. On SIGTERM (unless --ignore-term) it logs
"NAME term T", takes --stop-delay seconds, logs "NAME exit T" and exits 0. T is
CLOCK_MONOTONIC in seconds, the same clock for every process on the host, so the
tests can compare when services were told to stop and when they were gone.
--stop-gate FIFO: after logging "term", the stop blocks reading FIFO until the test
opens it for writing and closes it (tests/support/gate.rs), so a test can act while
the service is certainly still stopping, without guessing a delay.
--start-gate FIFO: if FIFO exists when it starts, it waits the same way before
writing its pidfile (the test makes the fifo once the first copies run, so only a
copy that drd starts later, in a rollback, waits).
"""

import argparse
import os
import signal
import time


def wait_gate(path):
    """Blocks until the test holds the fifo open, then until it closes it."""
    with open(path, "rb") as gate:
        gate.read()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--name", required=True)
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--stop-delay", type=float, default=0.0)
    parser.add_argument("--ignore-term", action="store_true")
    parser.add_argument("--stop-gate")
    parser.add_argument("--start-gate")
    args = parser.parse_args()

    def log(what):
        with open(args.log, "a") as f:
            f.write(f"{args.name} {what} {time.monotonic():.6f}\n")

    def on_term(_signum, _frame):
        log("term")
        if args.ignore_term:
            return
        if args.stop_gate:
            wait_gate(args.stop_gate)
        if args.stop_delay > 0:
            time.sleep(args.stop_delay)
        log("exit")
        # At once: interpreter teardown would add its own time to every stop.
        os._exit(0)

    signal.signal(signal.SIGTERM, on_term)
    if args.start_gate and os.path.exists(args.start_gate):
        wait_gate(args.start_gate)
    tmp = args.pidfile + ".tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(tmp, args.pidfile)
    log("start")
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
