"""A real ``kill -9`` of a CLI run and the comparison of its resume, for the tests that kill a
command and run it again (tests/test_kill_resume.py, tests/test_screen.py, tests/test_design.py,
tests/test_simulate_resume.py, tests/test_training_cli.py)."""

import signal
import subprocess
import sys
import time


def kill_9_when(arguments: list[str], ready, what: str, timeout_s: float = 300.0, delay_s: float = 0.0,
                enough=None) -> None:
    """Run ``sagesnet-tf ARGUMENTS`` in a subprocess, poll ``ready()`` every 20 ms until it holds,
    wait ``delay_s`` seconds (less where ``enough()`` is given and holds first: it is polled every
    10 ms, e.g. to kill before a run gets so far that it could end), then SIGKILL the process and reap it.

    ``what`` names the run in the failure messages (with whatever a test needs to reproduce it, such
    as its random seed): the process ending before ``ready()`` holds (the end of its stderr shown) or
    before the kill, or ``ready()`` not holding within ``timeout_s`` seconds, fails the test (the
    process killed all the same)."""
    proc = subprocess.Popen([sys.executable, "-m", "sagesnet_tf.cli", *arguments],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + timeout_s
        while not ready():
            assert proc.poll() is None, f"{what}: ended before the kill: {proc.stderr.read().decode()[-800:]}"
            assert time.time() < deadline, f"{what}: not under way after {timeout_s} s"
            time.sleep(0.02)
        kill_at = time.time() + delay_s
        while time.time() < kill_at and not (enough and enough()):
            time.sleep(0.01)
    finally:
        proc.kill()  # SIGKILL (nothing once the process has ended)
        proc.wait()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL, f"{what}: ended (exit status {proc.returncode}) before the kill"


def without_wall(rows: list[dict]) -> list[dict]:
    """``results.csv`` rows (column -> text) without ``wall_s``, the one column in which a resumed
    screen or design may differ from an uninterrupted one."""
    return [{k: v for k, v in r.items() if k != "wall_s"} for r in rows]
