"""Start a program, wait until it is ready, stop it the way the kubelet would."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


class StartupError(RuntimeError):
    """A process exited or never became ready; the message carries its log tail."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    """Poll ``condition`` until true; raise ``TimeoutError`` naming ``what`` otherwise."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if condition():
                return
        except StartupError:
            raise
        except Exception as exc:  # any other failure means "not yet"
            last_error = exc
        time.sleep(interval)
    detail = f" (last error: {last_error})" if last_error else ""
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")


def _die_with_parent() -> None:
    """In the child, before exec: get SIGKILL when the parent dies (Linux), so a test
    run that is killed outright leaves no cluster or worker behind."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


_PR_SET_PDEATHSIG = 1


class ManagedProcess:
    """One child process with its output in a log file, in its own process group.

    By default the child dies with its parent; ``detached=True`` lets it outlive it
    (``python -m stalk_devenv up``).
    """

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        detached: bool = False,
    ) -> None:
        self.name = name
        self.detached = detached
        self.argv = list(argv)
        self.log_path = log_dir / f"{name}.log"
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, ready: Callable[[], bool] | None = None, timeout: float = 30) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
                preexec_fn=None if self.detached or sys.platform != "linux" else _die_with_parent,
            )
        if ready is None:
            return

        def up() -> bool:
            if not self.running():
                raise StartupError(f"{self.name} exited early:\n{self.log_tail()}")
            return ready()

        try:
            wait_until(up, timeout, f"{self.name} to be ready")
        except StartupError:
            raise
        except TimeoutError as exc:
            self.stop(grace=1)
            raise StartupError(f"{exc}\n{self.log_tail()}") from None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def send(self, sig: signal.Signals) -> None:
        """Signal the main process only, as a container runtime signals PID 1."""
        if self.running():
            assert self._process is not None
            self._process.send_signal(sig)

    def stop(self, grace: float = 10) -> int | None:
        """SIGTERM to the main process, ``grace`` seconds, then SIGKILL to the whole group:
        what the kubelet does to a container (its children go with the cgroup)."""
        if self._process is None:
            return None
        if self._process.poll() is None:
            self.send(signal.SIGTERM)
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self._process.wait()
        self._kill_group()
        return self._process.returncode

    def kill(self) -> None:
        """SIGKILL the whole group at once, as a crash or an OOM kill would."""
        if self._process is not None:
            self._kill_group()
            self._process.wait()

    def wait(self, timeout: float | None = None) -> int:
        assert self._process is not None
        return self._process.wait(timeout=timeout)

    def _kill_group(self) -> None:
        # Children (e.g. prefork pool processes) share the group; none may outlive a stop.
        assert self._process is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])
