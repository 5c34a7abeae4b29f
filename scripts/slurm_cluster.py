"""A throwaway single-node SLURM cluster in a folder: munged, slurmctld and slurmd for tests.

Everything lives under one folder (config, munge key and socket, state, spool, logs);
the daemons listen on free non-default ports and are stopped by their own process ids,
so a cluster started here never touches a system SLURM or another test run. It needs
the ``slurm-wlm`` and ``munge`` packages (Debian/Ubuntu: ``apt-get install slurm-wlm
munge``) and root (``slurmd`` launches jobs as their user). The node is configured
``cgroup``-free (``proctrack/linuxproc``, ``task/none``) so that it runs in containers.

Use it from Python (the test suite's ``slurm_cluster`` fixture does)::

    cluster = LocalSlurmCluster("/tmp/atmos-slurm").start()   # raises SlurmUnavailable
    subprocess.run(["sbatch", "job.sh"], env=cluster.env)
    cluster.stop()

or from a shell::

    python scripts/slurm_cluster.py start --dir /tmp/atmos-slurm   # prints: export SLURM_CONF=...
    export SLURM_CONF=/tmp/atmos-slurm/slurm.conf; sbatch job.sh; squeue
    python scripts/slurm_cluster.py stop --dir /tmp/atmos-slurm

The module uses the standard library only (no atmos import).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["LocalSlurmCluster", "SlurmUnavailable", "missing_requirements"]

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "srun", "squeue", "scontrol", "scancel", "sinfo")


class SlurmUnavailable(RuntimeError):
    """The cluster cannot run here (binaries missing, not root, daemons did not come up)."""


def missing_requirements() -> str | None:
    """Why a local cluster cannot start here, or None when it can be tried."""
    missing = [b for b in (*DAEMONS, *CLIENTS) if _which(b) is None]
    if missing:
        return (f"SLURM/munge not installed (missing {', '.join(missing)}; "
                "Debian/Ubuntu: apt-get install slurm-wlm munge)")
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "a local SLURM cluster needs root (slurmd launches jobs as their user)"
    return None


def _which(name: str) -> str | None:
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _mem_mb() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return max(1000, int(line.split()[1]) // 1024 * 9 // 10)
    except OSError:
        pass
    return 4000


class LocalSlurmCluster:
    """One node (``cpus`` CPUs), one partition ``debug``, state and logs under ``root``.

    Parameters
    ----------
    root : path, optional
        Folder for everything (created; default: a new temporary folder).
    cpus : int
        CPUs the node offers (``SlurmdParameters=config_overrides``: used as given).
    kill_wait : int
        Seconds between SIGTERM and SIGKILL when a job is cancelled, requeued or times out.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, cpus: int = 2, kill_wait: int = 20) -> None:
        self.root = Path(root) if root is not None else Path(tempfile.mkdtemp(prefix="atmos-slurm-"))
        self.cpus = int(cpus)
        self.kill_wait = int(kill_wait)
        self.conf = self.root / "slurm.conf"
        self.munge_socket = self.root / "munge" / "munge.socket"
        self.node = socket.gethostname().split(".")[0] or "localhost"
        self.procs: dict[str, subprocess.Popen | int] = {}

    # -- environment ----------------------------------------------------------------------------
    @property
    def env(self) -> dict[str, str]:
        """``os.environ`` with ``SLURM_CONF`` pointing at this cluster (for sbatch/squeue/...)."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess:
        """Run a SLURM client command against this cluster; its output as text."""
        proc = subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout}")
        return proc

    # -- life cycle -----------------------------------------------------------------------------
    def _write_config(self) -> None:
        r = self.root
        for d in ("state", "spool", "munge", "log"):
            (r / d).mkdir(parents=True, exist_ok=True)
        # munged refuses a socket folder others cannot traverse and a key others can read
        for d in (r, r / "munge"):
            os.chmod(d, 0o755)
        key = r / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o600)
        ctld_port, slurmd_port = _free_port(), _free_port()
        lines = {
            "ClusterName": "atmoslocal",
            "SlurmctldHost": f"{self.node}(127.0.0.1)",
            "SlurmctldPort": ctld_port,
            "SlurmdPort": slurmd_port,
            "SlurmUser": "root",
            "SlurmdUser": "root",
            "AuthType": "auth/munge",
            "CredType": "cred/munge",
            "AuthInfo": f"socket={self.munge_socket}",
            "StateSaveLocation": r / "state",
            "SlurmdSpoolDir": r / "spool",
            "SlurmctldPidFile": r / "slurmctld.pid",
            "SlurmdPidFile": r / "slurmd.pid",
            "SlurmctldLogFile": r / "log" / "slurmctld.log",
            "SlurmdLogFile": r / "log" / "slurmd.log",
            "SlurmctldDebug": "info",
            "SlurmdDebug": "info",
            "ProctrackType": "proctrack/linuxproc",
            "TaskPlugin": "task/none",
            "JobAcctGatherType": "jobacct_gather/none",
            "AccountingStorageType": "accounting_storage/none",
            "SelectType": "select/cons_tres",
            "SelectTypeParameters": "CR_CPU",
            "SchedulerType": "sched/builtin",
            "SchedulerParameters": "sched_interval=2",
            "SlurmdParameters": "config_overrides",
            "MpiDefault": "none",
            "SwitchType": "switch/none",
            "ReturnToService": 2,
            "KillWait": self.kill_wait,
            "MinJobAge": 600,
            "InactiveLimit": 0,
        }
        text = "".join(f"{k}={v}\n" for k, v in lines.items())
        text += (f"NodeName={self.node} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={_mem_mb()} State=UNKNOWN\n"
                 f"PartitionName=debug Nodes={self.node} Default=YES MaxTime=INFINITE State=UP\n")
        self.conf.write_text("# a throwaway cluster written by scripts/slurm_cluster.py\n" + text)

    def _spawn(self, name: str, cmd: Sequence[str]) -> None:
        log = open(self.root / "log" / f"{name}.out", "ab")
        try:
            self.procs[name] = subprocess.Popen(
                list(cmd), env=self.env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout: float = 30.0) -> LocalSlurmCluster:
        """Write the config, start munged, slurmctld and slurmd; wait until the node is idle.

        Raises
        ------
        SlurmUnavailable
            When the binaries are missing, this is not root, or the node is not idle within
            ``timeout`` seconds (the daemons started are stopped again).
        """
        why = missing_requirements()
        if why:
            raise SlurmUnavailable(why)
        self._write_config()
        r = self.root
        try:
            self._spawn("munged", [_which("munged"), "-F", f"--socket={self.munge_socket}",
                                   f"--key-file={r / 'munge' / 'munge.key'}", f"--pid-file={r / 'munge' / 'munged.pid'}",
                                   f"--log-file={r / 'log' / 'munged.log'}", f"--seed-file={r / 'munge' / 'munged.seed'}"])
            self._wait(lambda: self.munge_socket.exists(), min(10.0, timeout), "munged did not create its socket")
            self._spawn("slurmctld", [_which("slurmctld"), "-D", "-f", str(self.conf)])
            self._spawn("slurmd", [_which("slurmd"), "-D", "-N", self.node, "-f", str(self.conf)])
            self._wait(self._node_idle, timeout, "the node did not become idle")
        except BaseException:
            self.stop()
            raise
        return self

    def _node_idle(self) -> bool:
        for name, p in self.procs.items():
            if isinstance(p, subprocess.Popen) and p.poll() is not None:
                raise SlurmUnavailable(f"{name} exited with status {p.returncode}:\n{self._log_tail(name)}")
        try:
            out = self.run("sinfo", "-h", "-N", "-o", "%t", check=False, timeout=10).stdout.split()
        except subprocess.TimeoutExpired:
            return False
        return bool(out) and out[0] == "idle"

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if ready():
                return
            time.sleep(0.2)
        raise SlurmUnavailable(f"{what} within {timeout:g} s; logs in {self.root / 'log'}:\n"
                               + "\n".join(self._log_tail(n) for n in self.procs))

    def _log_tail(self, name: str, lines: int = 8) -> str:
        out = []
        for f in (self.root / "log" / f"{name}.out", self.root / "log" / f"{name}.log"):
            if f.exists():
                out += [f"  {name}: {line}" for line in f.read_text(errors="replace").splitlines()[-lines:]]
        return "\n".join(out)

    def stop(self, timeout: float = 30.0) -> None:
        """Cancel every job, wait for them to end, then stop the daemons by their process ids."""
        if self.procs.get("slurmctld") and self.procs.get("slurmd"):
            try:
                self.run("scancel", "--full", "--user", "root", check=False, timeout=10)
                self._wait(lambda: not self.run("squeue", "-h", check=False, timeout=10).stdout.strip(),
                           timeout, "jobs did not end")
            except (SlurmUnavailable, subprocess.TimeoutExpired, OSError):
                pass
        for name in reversed(DAEMONS):
            p = self.procs.pop(name, None)
            if p is None:
                continue
            pid = p.pid if isinstance(p, subprocess.Popen) else int(p)
            _terminate(pid, p if isinstance(p, subprocess.Popen) else None)

    # -- state for the command line -------------------------------------------------------------
    def save(self) -> None:
        pids = {n: (p.pid if isinstance(p, subprocess.Popen) else int(p)) for n, p in self.procs.items()}
        (self.root / "cluster.json").write_text(json.dumps({"pids": pids, "node": self.node}))

    @classmethod
    def load(cls, root: str | os.PathLike) -> LocalSlurmCluster:
        c = cls(root)
        state = json.loads((c.root / "cluster.json").read_text())
        c.node = state["node"]
        c.procs = {n: int(pid) for n, pid in state["pids"].items()}
        return c

    # -- job helpers ----------------------------------------------------------------------------
    def job_state(self, job: str) -> tuple[str, str]:
        """``(state, reason)`` of a job (``("", "")`` when the controller no longer knows it)."""
        out = self.run("squeue", "-h", "-j", str(job), "-o", "%T|%r", check=False).stdout.strip()
        if out:
            state, _, reason = out.splitlines()[0].partition("|")
            return state, reason
        out = self.run("scontrol", "-o", "show", "job", str(job), check=False).stdout
        fields = dict(f.split("=", 1) for f in out.split() if "=" in f)
        return fields.get("JobState", ""), fields.get("Reason", "")

    def release(self, job: str) -> bool:
        """Start a requeued job now instead of after SLURM's requeue delay (BeginTime); True if it was pending.

        Call it again while the job stays pending: SLURM may set the delay just after the
        job became pending again.
        """
        state, _ = self.job_state(job)
        if state == "PENDING":
            self.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
            return True
        return False


def _terminate(pid: int, popen: subprocess.Popen | None, timeout: float = 10.0) -> None:
    """SIGTERM ``pid``, SIGKILL it after ``timeout`` seconds; reap it when it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _alive(pid):
            return
        time.sleep(0.1)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        popen.wait(5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(")")[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] = os.environ) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--dir", default=environ.get("ATMOS_SLURM_DIR", str(Path(tempfile.gettempdir()) / "atmos-slurm")),
                        help="folder of the cluster (default $ATMOS_SLURM_DIR or /tmp/atmos-slurm)")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the node (default 2)")
    args = parser.parse_args(argv)
    root = Path(args.dir)
    if args.action == "start":
        if (root / "cluster.json").exists():
            print(f"a cluster is already recorded in {root}; stop it first", file=sys.stderr)
            return 1
        try:
            cluster = LocalSlurmCluster(root, cpus=args.cpus).start()
        except SlurmUnavailable as err:
            print(f"cannot start a local SLURM cluster: {err}", file=sys.stderr)
            return 1
        cluster.save()
        print(f"export SLURM_CONF={cluster.conf}")
        return 0
    if not (root / "cluster.json").exists():
        print(f"no cluster recorded in {root}", file=sys.stderr)
        return 1
    cluster = LocalSlurmCluster.load(root)
    if args.action == "status":
        print(cluster.run("sinfo", check=False).stdout + cluster.run("squeue", check=False).stdout, end="")
        return 0
    cluster.stop()
    (root / "cluster.json").unlink()
    print(f"stopped the cluster in {root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
