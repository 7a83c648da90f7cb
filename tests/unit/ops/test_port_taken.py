"""A port the stack needs: waited for while its last owner closes it, else its listener named; a process counts as running while any thread of it runs."""

from __future__ import annotations

import os
import socket
import threading

from crmctl.processes import port_taken_by


def _listening() -> socket.socket:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    return server


def test_a_free_port_is_free():
    server = _listening()
    port = server.getsockname()[1]
    server.close()
    assert port_taken_by(port, wait_s=0) is None


def test_a_port_closed_while_waiting_counts_as_free():
    server = _listening()
    port = server.getsockname()[1]
    threading.Timer(0.3, server.close).start()
    assert port_taken_by(port, wait_s=5) is None  # without the wait: "pid ... (python ...)"


def test_a_port_held_for_good_names_its_process():
    server = _listening()
    try:
        holder = port_taken_by(server.getsockname()[1], wait_s=0.3)
        assert holder is not None and holder.startswith(f"pid {os.getpid()} (")
    finally:
        server.close()


def test_a_process_whose_first_thread_has_exited_still_runs(tmp_path):
    # Its first thread a zombie, another thread holding on: still running (its sockets are still open).
    import signal
    import sys

    from crmctl.processes import ManagedProcess

    code = "import ctypes, threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); ctypes.CDLL(None).pthread_exit(None)"
    process = ManagedProcess("t", tmp_path / "t.pid", tmp_path / "t.log", "pthread_exit")
    pid = process.start([sys.executable, "-c", code])
    try:
        def leader_state() -> str:
            return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]

        deadline = 50
        while leader_state() != "Z" and deadline:
            threading.Event().wait(0.1)
            deadline -= 1
        assert leader_state() == "Z"
        assert process.pid() == pid and process.running()
    finally:
        os.kill(pid, signal.SIGKILL)
    for _ in range(50):  # every thread gone: a zombie (or reaped), not running
        if process.pid() is None:
            break
        threading.Event().wait(0.1)
    assert process.pid() is None
