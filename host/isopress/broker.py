"""A Mosquitto of our own: started from ``deploy/mosquitto``'s config on a free port.

Tests use it to talk to a real broker and to kill (SIGKILL) and restart it on the same
port; ``make demo`` uses it when the ``mosquitto`` binary is installed.

Two variants of the one deployed file, both with that file's persistence, queue and
packet settings:

- plain (the default): the secure listener (TLS, passwords, ACL) is swapped for an
  anonymous listener on 127.0.0.1, for every test that is not about security;
- secure (``secure=SecureFiles(...)``): the deployed listener and its security as they
  are, on 127.0.0.1, with the certificates, password file and ACL file given.
"""

from __future__ import annotations

import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .paths import deploy_root

__all__ = ["BrokerError", "Mosquitto", "SecureFiles", "free_port", "mosquitto_binary", "render_config"]

# Lines of the deployed config that belong to the machine it runs on; a private broker
# gets its own.
_MACHINE_KEYS = frozenset({"listener", "persistence_location", "log_dest", "pid_file", "user"})

# Options that belong to the listener above them (Mosquitto applies them to the last
# `listener` line); a private broker repeats them under its own listener line.
_LISTENER_KEYS = frozenset(
    {
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "crlfile",
        "ciphers",
        "ciphers_tls1.3",
        "dhparamfile",
        "require_certificate",
        "use_identity_as_username",
        "use_subject_as_username",
        "use_username_as_clientid",
        "tls_version",
        "protocol",
        "socket_domain",
        "max_connections",
    }
)

# What the plain variant drops: everything that makes the listener secure.
_SECURITY_KEYS = frozenset(
    {
        "cafile",
        "capath",
        "certfile",
        "keyfile",
        "crlfile",
        "ciphers",
        "ciphers_tls1.3",
        "dhparamfile",
        "require_certificate",
        "use_identity_as_username",
        "use_subject_as_username",
        "tls_version",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "psk_file",
        "psk_hint",
    }
)


# The files the secure variant replaces (each a SecureFiles field of the same name).
_FILE_KEYS = frozenset({"cafile", "certfile", "keyfile", "password_file", "acl_file"})


class BrokerError(RuntimeError):
    """Mosquitto could not be found, started or reached."""


@dataclass(frozen=True, slots=True)
class SecureFiles:
    """The files the deployed config names under /etc/mosquitto/isopress/, for a private broker."""

    cafile: Path  # the CA that signs the broker's and the clients' certificates
    certfile: Path  # the broker's certificate
    keyfile: Path  # the broker's key
    password_file: Path  # made with mosquitto_passwd
    acl_file: Path  # e.g. deploy/mosquitto/isopress.acl


def mosquitto_binary() -> str:
    """Path of the mosquitto executable, or a :class:`BrokerError` saying how to install it."""
    for candidate in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if candidate and Path(candidate).exists():
            return candidate
    raise BrokerError("mosquitto is not installed: run `sudo apt-get install -y mosquitto`")


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _key(line: str) -> str:
    stripped = line.strip()
    if not stripped or stripped.startswith("#"):
        return ""
    return stripped.split(None, 1)[0]


def render_config(
    template: str,
    *,
    port: int,
    workdir: Path,
    extra: Mapping[str, str] | None = None,
    secure: SecureFiles | None = None,
) -> str:
    """The deployed config with this broker's port, persistence folder and log file.

    Without ``secure`` the listener is an anonymous one on 127.0.0.1 (every security
    line of the template dropped); with it the template's listener options and security
    lines are kept and their files replaced by ``secure``'s. ``extra`` lines go last (under
    the listener, so listener options in it apply to it).
    """
    kept: list[str] = []
    listener_options: list[str] = []
    listeners = 0
    for raw in template.splitlines():
        key = _key(raw)
        if key == "listener":
            listeners += 1
            continue
        if key in _MACHINE_KEYS:
            continue
        if secure is None and key in _SECURITY_KEYS:
            continue
        line = f"{key} {getattr(secure, key)}" if secure is not None and key in _FILE_KEYS else raw
        if listeners and key in _LISTENER_KEYS:
            listener_options.append(line.strip())
        else:
            kept.append(line)
    if secure is not None and listeners != 1:
        raise BrokerError(f"the secure variant needs exactly one listener in the config, found {listeners}")
    own = [f"listener {port} 127.0.0.1", *listener_options]
    if secure is None:
        own.append("allow_anonymous true")
    own += [
        f"persistence_location {workdir}/",
        f"log_dest file {workdir / 'mosquitto.log'}",
        f"user {getpass.getuser()}",
    ]
    own += [f"{key} {value}" for key, value in (extra or {}).items()]
    return "\n".join([*kept, "", "# private broker", *own, ""])


class Mosquitto:
    """One Mosquitto process on a loopback port, restartable on the same port.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        config: Path | None = None,
        extra: Mapping[str, str] | None = None,
        config_text: str | None = None,
        secure: SecureFiles | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port if port is not None else free_port()
        self.host = "127.0.0.1"
        self._template = (
            config_text
            if config_text is not None
            else ((config or deploy_root() / "mosquitto" / "isopress.conf").read_text())
        )
        self._extra = dict(extra or {})
        self.secure = secure
        self._proc: subprocess.Popen[bytes] | None = None
        self.config_path = workdir / "mosquitto.conf"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log_text(self) -> str:
        log = self.workdir / "mosquitto.log"
        return log.read_text(errors="replace") if log.exists() else ""

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(
            render_config(
                self._template, port=self.port, workdir=self.workdir, extra=self._extra, secure=self.secure
            )
        )
        self._proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise BrokerError(
                    f"mosquitto exited with {self._proc.returncode}: {err.strip()} {self.log_text()[-2000:]}"
                )
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.kill()
        raise BrokerError(f"mosquitto did not listen on {self.host}:{self.port} within {timeout_s} s")

    def kill(self) -> None:
        """SIGKILL: the broker dies without saving anything it had not saved yet."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: an orderly shutdown (the broker saves its persistence file)."""
        self._signal(signal.SIGTERM)

    def reload(self) -> None:
        """SIGHUP: Mosquitto re-reads its password and ACL files (``systemctl reload``).

        Connected clients stay, except those whose login the new password file refuses.
        """
        proc = self._proc
        if proc is None or proc.poll() is not None:
            raise BrokerError("mosquitto is not running")
        os.kill(proc.pid, signal.SIGHUP)

    def restart(self, timeout_s: float = 10.0) -> None:
        """Kill the broker and start it again on the same port."""
        self.kill()
        self.start(timeout_s)

    def _signal(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
