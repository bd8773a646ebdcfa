"""A throw-away single-node SLURM cluster on this machine: munged, slurmctld and slurmd, started
by hand as root (no systemd), for tests that submit real jobs.

Everything lives in one folder (key, state, spool, logs), except munged's socket (a folder of
its own under /tmp, removed on stop) and the configuration:
the SLURM executor plugin's job step strips every ``SLURM_*`` variable (``SLURM_CONF``
included) before its inner ``srun``, which then reads only the compiled-in path
``/etc/slurm/slurm.conf``. So the configuration is written there, and a file already there is
set aside and put back on stop (gres.conf beside it likewise).

Daemons run in the foreground (``-D``/``-F``) as children of the test, so they are stopped by
the PIDs the test holds, never by name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
GRES_CONF = CONF.with_name("gres.conf")  # slurmd reads it from slurm.conf's folder
# Debian puts the daemons in /usr/sbin, which a non-login PATH can lack.
SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scancel", "scontrol", "srun", "sinfo")
PARTITION = "debug"
ACCOUNT = "cdrepro"


def why_not_here() -> str | None:
    """The reason a cluster cannot be brought up on this machine, or None if it can."""
    if os.geteuid() != 0:
        return "needs root: munged, slurmctld and slurmd are started by hand as root"
    missing = [tool for tool in DAEMONS + CLIENTS if shutil.which(tool, path=SEARCH_PATH) is None]
    if missing:
        return (
            f"SLURM or MUNGE not installed (missing {', '.join(missing)}); "
            "apt-get install slurm-wlm munge, as .ci/run does"
        )
    # A real installation would read the test's /etc/slurm/slurm.conf on its next reconfigure.
    running = sorted(running_commands() & {"slurmctld", "slurmd"})
    if running:
        return f"a SLURM daemon is already running here ({', '.join(running)}); not replacing its configuration"
    return None


def running_commands() -> set[str]:
    """The command names of every process on the machine (read only: /proc/PID/comm)."""
    names = set()
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):  # the process ended meanwhile
            names.add(comm.read_text().strip())
    return names


def free_ports(count: int) -> list[int]:
    """Ports nobody listens on now; all held open together, so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def this_machine() -> dict[str, str]:
    """This machine as slurmd sees it: NodeName, CPUs, RealMemory, ... (``slurmd -C``)."""
    out = subprocess.run(
        [shutil.which("slurmd", path=SEARCH_PATH), "-C"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    line = next(line for line in out.splitlines() if line.startswith("NodeName="))
    return dict(item.split("=", 1) for item in line.split())


class Cluster:
    """One node (this machine: its memory, ``cpus`` CPU slots and one fake GPU) in one default
    partition.
    ``start()`` brings the three daemons up and waits for the node to be idle; ``stop()``
    cancels what is queued, ends the daemons by PID and puts back ``/etc/slurm``'s files.
    ``stop()`` is safe after a partial ``start()`` and more than once."""

    def __init__(self, root: Path, cpus: int = 4, min_job_age: int = 3600) -> None:
        self.root = root
        # CPU slots the node offers, whatever the machine has (config_overrides): more than
        # the CI machine's 2 cores, so that in a test the GPU, not the CPUs, is what keeps
        # GPU jobs apart. The tiny jobs share the cores.
        self.cpus = cpus
        # Without accounting, finished jobs are visible (to squeue, to the plugin's status
        # checks, to the test afterwards) only for MinJobAge seconds.
        self.min_job_age = min_job_age
        self.daemons: dict[str, subprocess.Popen] = {}
        # System files written by start(): path -> copy of what was there before, or None.
        self.installed: dict[Path, Path | None] = {}
        self.node = ""
        self.munge_run: Path | None = None

    # ---------------------------------------------------------------- paths

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def munge_socket(self) -> Path:
        return self.munge_run / "munge.socket"

    # ---------------------------------------------------------------- start

    def start(self) -> None:
        for name in ("munge-key", "state", "spool", "log"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
        self._start_munge()
        self._write_conf()
        self._spawn("slurmctld", "-D", "-f", str(CONF))
        self._wait("slurmctld answering", lambda: "is UP" in self._out("scontrol", "ping"))
        self._spawn("slurmd", "-D", "-f", str(CONF))
        self._wait("the node idle", lambda: self._out("sinfo", "-h", "-n", self.node, "-o", "%T").strip() == "idle")

    def _start_munge(self) -> None:
        # munged refuses a key that others can read or a key folder they can enter.
        key = self.root / "munge-key" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        key.parent.chmod(0o700)
        # It also wants every folder above its socket open to all (o+x), which the test's
        # private temporary folders are not (a short path also keeps the socket's name under
        # its 108-byte limit); clients, every SLURM command, connect there.
        self.munge_run = Path(tempfile.mkdtemp(prefix="cdrepro-munge-"))
        self.munge_run.chmod(0o755)
        self._spawn(
            "munged",
            "-F",
            f"--key-file={key}",
            f"--socket={self.munge_socket}",
            f"--log-file={self.logs / 'munged.log'}",
            f"--pid-file={self.munge_run / 'munged.pid'}",
            f"--seed-file={self.root / 'munge-key' / 'munged.seed'}",
        )
        self._wait("munged's socket", self.munge_socket.exists)

    def _write_conf(self) -> None:
        machine = this_machine()
        self.node = machine["NodeName"]
        ctld_port, d_port = free_ports(2)
        conf = f"""\
# Written by {__file__} for a test; removed (the previous file restored) when it ends.
ClusterName=cdreprotest
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
StateSaveLocation={self.root / "state"}
SlurmdSpoolDir={self.root / "spool"}
SlurmctldPidFile={self.root / "slurmctld.pid"}
SlurmdPidFile={self.root / "slurmd.pid"}
SlurmctldLogFile={self.logs / "slurmctld.log"}
SlurmdLogFile={self.logs / "slurmd.log"}
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MinJobAge={self.min_job_age}
GresTypes=gpu
KillWait=5
SlurmdParameters=config_overrides
NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={machine["RealMemory"]} Gres=gpu:1 State=UNKNOWN
PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP
"""
        # One GPU that is /dev/null: enough for SLURM to allocate, count and serialise GPU
        # requests (sbatch --gpus=1) on a machine without one.
        self._install(CONF, conf)
        self._install(GRES_CONF, f"NodeName={self.node} Name=gpu File=/dev/null\n")

    def _install(self, path: Path, text: str) -> None:
        """Write a system file, setting aside the one already there for stop() to restore."""
        path.parent.mkdir(parents=True, exist_ok=True)
        saved = None
        if path.exists():
            saved = self.root / f"{path.name}.saved"
            shutil.copy2(path, saved)
        self.installed[path] = saved
        path.write_text(text)

    def _spawn(self, daemon: str, *args: str) -> None:
        # The daemon holds its own copy of the log's descriptor: ours closes at once.
        with open(self.logs / f"{daemon}.out", "w") as out:
            self.daemons[daemon] = subprocess.Popen(
                [shutil.which(daemon, path=SEARCH_PATH), *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def _wait(self, what: str, ready, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not ready():
            dead = [name for name, p in self.daemons.items() if p.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise RuntimeError(
                    f"SLURM test cluster: no {what} after {timeout:.0f} s"
                    f"{' (' + ', '.join(dead) + ' exited)' if dead else ''}\n" + self.log_tail()
                )
            time.sleep(0.3)

    # ---------------------------------------------------------------- commands

    def _run(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=dict(os.environ, PATH=SEARCH_PATH))

    def _out(self, *argv: str) -> str:
        return self._run(*argv).stdout

    def jobs(self) -> list[dict[str, str]]:
        """Every job slurmctld still remembers (for MinJobAge after it ends), as scontrol's
        fields: JobId, JobName, JobState, Partition, Account, NodeList, TresPerJob, StartTime,
        EndTime, Comment (where the Snakemake plugin writes the rule and wildcards), ..."""
        out = self._out("scontrol", "--oneliner", "show", "job")
        return [dict(re.findall(r"(\w+)=(\S*)", line)) for line in out.splitlines() if "JobId=" in line]

    def log_tail(self, lines: int = 30) -> str:
        parts = []
        for log in sorted(self.logs.glob("*")):
            text = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name}\n" + "\n".join(text))
        return "\n".join(parts)

    # ---------------------------------------------------------------- stop

    def stop(self) -> None:
        try:
            if "slurmctld" in self.daemons and self.daemons["slurmctld"].poll() is None:
                self._cancel_all()
        finally:
            # The reverse of start: slurmd, slurmctld, then munged, which the others need
            # to talk to each other while shutting down.
            for name in reversed(DAEMONS):
                if name in self.daemons:
                    self._end(self.daemons.pop(name))
            self._restore_files()
            if self.munge_run is not None:
                shutil.rmtree(self.munge_run, ignore_errors=True)

    def _cancel_all(self) -> None:
        """Cancel every job not finished, and wait (bounded) for their job steps to exit, so
        that no slurmstepd or job process outlives the cluster."""
        active = "PENDING,RUNNING,SUSPENDED,COMPLETING,CONFIGURING,REQUEUED"
        ids = self._out("squeue", "--noheader", f"--states={active}", "--format=%i").split()
        if ids:
            self._run("scancel", *ids)
        deadline = time.monotonic() + 30
        while self._out("squeue", "--noheader", f"--states={active}", "--format=%i").split():
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)

    @staticmethod
    def _end(process: subprocess.Popen) -> None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)

    def _restore_files(self) -> None:
        for path, saved in self.installed.items():
            if saved is None:
                path.unlink(missing_ok=True)
            else:
                shutil.copy2(saved, path)
        self.installed.clear()
