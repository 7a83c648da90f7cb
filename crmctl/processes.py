"""Background processes with pid files, and the small helpers starting them needs."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class StackError(RuntimeError):
    """A step of provisioning or starting the stack failed; the message says what to do."""


def need(tool: str, hint: str) -> str:
    path = shutil.which(tool)
    if not path:
        raise StackError(f"'{tool}' is not installed or not on PATH. {hint}")
    return path


def run(cmd: list[str], what: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-25:])
        raise StackError(f"{what} failed (exit {result.returncode}): {' '.join(cmd)}\n{tail}")


def port_open(port: int, host: str = "127.0.0.1", timeout: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        return sock.connect_ex((host, port)) == 0


def _running_thread(pid: int) -> str | None:
    """A thread of ``pid`` that is not a zombie, or None when the process is gone or a zombie.

    A process whose first thread has exited shows that thread as a zombie while its other threads go on
    (and hold its sockets), so each thread is looked at."""
    try:
        threads = [t.name for t in Path(f"/proc/{pid}/task").iterdir()]
    except (FileNotFoundError, ProcessLookupError):  # gone, or going (ESRCH while it is reaped)
        return None
    for thread in threads:
        try:
            state = Path(f"/proc/{pid}/task/{thread}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):  # a thread exiting as it is read gives ESRCH
            continue
        if state != "Z":
            return thread
    return None


def port_taken_by(port: int, wait_s: float = 15.0) -> str | None:
    """None when nothing listens on the loopback ``port`` (waiting up to ``wait_s`` for it to close), else who does.

    A server stopped a moment ago may still hold its port while it finishes closing: that is waited
    for, not reported (a reliability run once found a restarted Kafka node's port taken, and nothing
    listening on it by the next scenario)."""
    deadline = time.monotonic() + wait_s
    while port_open(port):
        if time.monotonic() >= deadline:
            return _listener(port) or "another program"
        time.sleep(0.2)
    return None


def _listener(port: int) -> str | None:
    """``pid N (command line)`` of the process listening on ``port``, when /proc shows it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9 and fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{fields[9]}]")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) in inodes for fd in (proc / "fd").iterdir()):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
                return f"pid {proc.name} ({cmdline[:120]})"
        except OSError:
            continue
    return None


def wait_for(check: Callable[[], bool], what: str, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.3)
    hint = f" See the log: {log}" if log else ""
    raise StackError(f"{what} did not become ready within {timeout:.0f}s.{hint}")


def _raise_open_files_limit() -> None:
    """Kafka keeps files open per partition and FerretDB per database: lift the soft limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for wanted in (1_048_576, hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(wanted, hard)))
            return
        except (ValueError, OSError):
            continue


class ManagedProcess:
    """A background process with a pid file; stop ends exactly the process that start began."""

    def __init__(self, name: str, pid_file: Path, log_file: Path, marker: str) -> None:
        self.name = name
        self.pid_file = pid_file
        self.log_file = log_file
        self.marker = marker  # a string in the command line that proves the pid is still ours

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        thread = _running_thread(pid)
        if thread is None:
            return None
        try:  # a live thread's: an exited first thread's command line reads empty
            cmdline = Path(f"/proc/{pid}/task/{thread}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            return None
        return pid if self.marker in cmdline else None

    def running(self) -> bool:
        return self.pid() is not None

    def start(self, cmd: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> int:
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            log.write(f"\n--- {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env=env, cwd=cwd, start_new_session=True, preexec_fn=_raise_open_files_limit,
            )
        self.pid_file.write_text(str(proc.pid))
        return proc.pid

    def stop(self, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
        pid = self.pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        os.kill(pid, sig)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.pid() is not None:
            time.sleep(0.1)
        if self.pid() is not None:
            os.kill(pid, signal.SIGKILL)
            while self.pid() is not None:
                time.sleep(0.05)
        self.pid_file.unlink(missing_ok=True)
        return True

    def kill(self) -> bool:
        """SIGKILL, for crash tests."""
        return self.stop(timeout=0.0, sig=signal.SIGKILL)
