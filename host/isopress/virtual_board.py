"""The virtual board in real time on a pseudo-terminal: a serial port like a USB board's.

:class:`VirtualBoard` builds the sim firmware bundle (``.mpy`` modules, as a board runs
them), opens a pty pair, puts the slave side in raw mode and starts the firmware
(``main.py --realtime``) with the master side as its stdin: the real control loop, the
real serial link, the plant and transducer models on the real clock. ``.port`` is the
slave's path: open it with pyserial (or the agent's ``serial.port``) exactly as a
``/dev/ttyACM0``. ``restart()`` kills the process and boots it again with the next
boot count and a reset cause, which is what a board reset looks like from the host.

The launcher keeps both pty ends open for the board's whole life, so a host may open and
close the port as it likes (a closed slave is no hangup for the firmware) and a restart
keeps the same port path.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import termios
import tty
from pathlib import Path
from types import TracebackType
from typing import Any

from isoproto.codes import RESET_HARD, RESET_POWER_ON

from . import micropython_port
from .firmware_build import build_bundle
from .paths import firmware_root, protocol_root

__all__ = ["RUNTIMES", "VirtualBoard", "VirtualBoardError"]

RUNTIMES = ("micropython", "cpython")
_STOP_TIMEOUT_S = 5.0
# The journal (its file, its class, a hex line per sample) is test instrumentation a real
# board does not carry: a journalling board gets this much heap on top, so the firmware
# keeps the RP2040's margin (without it the link's CRC table no longer fits at boot).
JOURNAL_HEAP_BYTES = 8 * 1024


class VirtualBoardError(RuntimeError):
    """The virtual board could not be started, or its firmware process died."""


class VirtualBoard:
    """The firmware on a pty in real time. A context manager: ``with VirtualBoard() as vb:``.

    Args:
        runtime: ``"micropython"`` (the unix port, from the built ``.mpy`` bundle, with
            ``heap_bytes`` of heap) or ``"cpython"`` (the sources, for debugging).
        seed: the plant's and transducer's random seed.
        config_text: a sealed ``config.json`` text for the board (default: the sim's).
        boot_count: the first boot's count; each ``restart()`` adds one.
        reset_cause: ``isoproto.codes.RESET_*`` the first boot reports.
        heap_bytes: MicroPython heap (default an RP2040's, 180 KB).
        run_s: stop by itself after this much time (0: until ``stop()``).
        print_every_s: the board's status line in its log every this many seconds (0: none).
        journal_dir: when set, each boot writes its journal (samples produced, commands
            executed, host contacts: :mod:`isopress.board_journal`) to
            ``journal_dir/boot-<boot_count>.journal``.
    """

    def __init__(
        self,
        *,
        runtime: str = "micropython",
        seed: int = 1,
        config_text: str | None = None,
        boot_count: int = 1,
        reset_cause: int = RESET_POWER_ON,
        heap_bytes: int = micropython_port.RP2040_HEAP_BYTES,
        run_s: float = 0.0,
        print_every_s: float = 0.0,
        journal_dir: Path | None = None,
    ) -> None:
        if runtime not in RUNTIMES:
            raise ValueError(f"runtime {runtime!r}: expected one of {', '.join(RUNTIMES)}")
        self.runtime = runtime
        self.seed = seed
        self.config_text = config_text
        self.boot_count = boot_count
        self.reset_cause = reset_cause
        self.heap_bytes = heap_bytes
        self.run_s = run_s
        self.print_every_s = print_every_s
        self.journal_dir = journal_dir
        self.summary: dict[str, Any] | None = None
        self.logs: list[str] = []  # the log of every boot so far, oldest first
        self._dir: Path | None = None
        self._master = -1
        self._slave = -1
        self._port = ""
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> VirtualBoard:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def port(self) -> str:
        """The serial port's path (the pty's slave side), e.g. ``/dev/pts/7``."""
        if not self._port:
            raise VirtualBoardError("the virtual board is not started")
        return self._port

    @property
    def running(self) -> bool:
        """True while the firmware process runs."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The firmware process's id (-1 when not running)."""
        return self._proc.pid if self._proc is not None else -1

    def start(self) -> None:
        """Build the firmware, open the pty and boot the board."""
        if self._proc is not None:
            raise VirtualBoardError("the virtual board is already started")
        self._dir = Path(tempfile.mkdtemp(prefix="isopress-vboard-"))
        try:
            if self.runtime == "micropython":
                build_bundle("sim", self._dir / "bundle")
            if self.config_text is not None:
                (self._dir / "config.json").write_text(self.config_text)
            master, slave = os.openpty()
            self._master, self._slave = master, slave
            tty.setraw(slave, termios.TCSANOW)  # bytes pass untouched: no echo, editing, signals
            flags = fcntl.fcntl(master, fcntl.F_GETFL)
            fcntl.fcntl(master, fcntl.F_SETFL, flags | os.O_NONBLOCK)  # the link never blocks
            self._port = os.ttyname(slave)
            self._boot()
        except BaseException:
            self._close()
            raise

    def restart(self, reset_cause: int = RESET_HARD) -> None:
        """A board reset mid-run: kill the firmware (no clean stop) and boot it again on
        the same port with boot_count + 1 and ``reset_cause``."""
        self._kill()
        self._drain_input()  # a reset board has lost what the host sent it
        self.boot_count += 1
        self.reset_cause = reset_cause
        self._boot()

    def stop(self) -> dict[str, Any] | None:
        """Stop the firmware (SIGINT: it ends its loop and writes its summary), close the
        pty. Returns the board's JSON summary, or None when it could not give one."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._collect_log()
        self._proc = None
        self._close()
        return self.summary

    def journal_path(self, boot_count: int) -> Path:
        """Where boot ``boot_count`` writes its journal (needs ``journal_dir``)."""
        if self.journal_dir is None:
            raise VirtualBoardError("this virtual board keeps no journal (journal_dir=None)")
        return self.journal_dir / f"boot-{boot_count}.journal"

    # -- diagnostics --------------------------------------------------------------------
    def log_text(self) -> str:
        """The current (or last) boot's stdout and stderr: config errors, status lines,
        the summary, a traceback."""
        if self._log_path is not None and self._log_path.exists():
            return self._log_path.read_text(errors="replace")
        return self.logs[-1] if self.logs else ""

    def check_alive(self) -> None:
        """Raise :class:`VirtualBoardError` (with the board's log) if the firmware died."""
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            log = self.log_text()[-4000:]
            raise VirtualBoardError(f"the virtual board's firmware exited with {code}:\n{log}")

    # -- internals ----------------------------------------------------------------------
    def _argv(self) -> tuple[list[str], dict[str, str]]:
        assert self._dir is not None
        args = [
            "--realtime",
            "--seed",
            str(self.seed),
            "--boot-count",
            str(self.boot_count),
            "--reset-cause",
            str(self.reset_cause),
            "--run-s",
            str(self.run_s),
            "--print-every-s",
            str(self.print_every_s),
        ]
        if self.config_text is not None:
            args += ["--config", str(self._dir / "config.json")]
        if self.journal_dir is not None:
            self.journal_dir.mkdir(parents=True, exist_ok=True)
            args += ["--journal", str(self.journal_path(self.boot_count))]
        env = dict(os.environ)
        if self.runtime == "micropython":
            bundle = self._dir / "bundle"
            env["MICROPYPATH"] = str(bundle)
            exe = str(micropython_port.micropython_executable())
            heap = self.heap_bytes + (JOURNAL_HEAP_BYTES if self.journal_dir is not None else 0)
            return [exe, "-X", f"heapsize={heap}", str(bundle / "main.py"), *args], env
        fw = firmware_root()
        path = [fw / "boards" / "sim", fw, protocol_root()]
        env["PYTHONPATH"] = os.pathsep.join(str(p) for p in path)
        return [sys.executable, str(fw / "main.py"), *args], env

    def _boot(self) -> None:
        assert self._dir is not None
        argv, env = self._argv()
        self._log_path = self._dir / f"boot-{self.boot_count}.log"
        with open(self._log_path, "wb") as log:
            # Its own session: a Ctrl-C in the launcher's terminal is the launcher's to handle.
            self._proc = subprocess.Popen(
                argv,
                stdin=self._master,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        self.summary = None

    def _kill(self) -> None:
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            self._collect_log()

    def _collect_log(self) -> None:
        if self._log_path is None or not self._log_path.exists():
            return
        text = self._log_path.read_text(errors="replace")
        self.logs.append(text)
        self._log_path = None
        for line in reversed(text.splitlines()):
            if line.startswith("{"):
                try:
                    self.summary = json.loads(line)
                except ValueError:
                    continue
                break

    def _drain_input(self) -> None:
        if self._master < 0:
            return
        while True:
            try:
                if not os.read(self._master, 65536):
                    return
            except OSError:  # BlockingIOError: nothing more
                return

    def _close(self) -> None:
        for fd in (self._master, self._slave):
            if fd >= 0:
                os.close(fd)
        self._master = -1
        self._slave = -1
        self._port = ""
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
