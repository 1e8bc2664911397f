"""A real single-node Slurm cluster in a temporary directory, for the integration test.

Debian's packages (munge, slurmctld, slurmd, slurm-client, slurmdbd, mariadb-server;
`scripts/install-slurm.sh`) run without systemd: every daemon is started here by hand,
in the foreground, with its own socket, ports, state and logs under one directory, so
nothing in /etc is touched and several clusters could coexist. The node advertises two
fake GPUs (character devices standing in for /dev/nvidia*) so that jobs asking for
`--gpus` are schedulable on a machine without a GPU. Every wait is bounded; the daemons
are stopped by PID.

Run it by hand to get a cluster to play with (Ctrl-C stops it):

    python tests/slurm_cluster.py
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "sacct", "sacctmgr", "squeue", "scancel", "sinfo", "scontrol")
# srun inside a job finds the cluster only here: the executor's job step drops SLURM_CONF
# from the environment of the srun it starts. The cluster links it to its own
# configuration while it runs, and only when the machine has no Slurm of its own.
SYSTEM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "local"
ACCOUNT = "coar"
GPU_TYPE = "fake"
N_GPUS = 2


def missing_programs() -> list[str]:
    """Programs the cluster needs that are not installed (empty when all are)."""
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    return [p for p in DAEMONS + CLIENTS if shutil.which(p, path=search) is None]


def _program(name: str) -> str:
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"])
    path = shutil.which(name, path=search)
    if path is None:
        raise FileNotFoundError(f"{name} is not installed; run scripts/install-slurm.sh")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ready, timeout: float, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.2)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s\n{tail}")


class SlurmCluster:
    """Start with `start()`, stop with `stop()` (or use as a context manager)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root or tempfile.mkdtemp(prefix="coar-slurm-"))
        self.host = socket.gethostname().split(".")[0]
        self.processes: dict[str, subprocess.Popen] = {}
        self.env = dict(os.environ, SLURM_CONF=str(self.root / "slurm.conf"))

    # -- configuration ---------------------------------------------------------------
    def _write_configs(self) -> None:
        r = self.root
        for d in ("state", "spool", "mysql", "munge"):
            (r / d).mkdir(exist_ok=True)
        (r / "munge").chmod(0o700)
        self.ports = {name: _free_port() for name in ("mysql", "slurmdbd", "slurmctld", "slurmd")}
        cpus = os.cpu_count() or 1
        memory_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20
        # Fake GPUs: character devices with /dev/null's numbers, as gres.conf needs files.
        for i in range(N_GPUS):
            device = r / f"fakegpu{i}"
            if not device.exists():
                os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
        auth = f"AuthType=auth/munge\nAuthInfo=socket={r}/munge/munge.socket\n"
        (r / "slurm.conf").write_text(
            f"""ClusterName=coartest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={self.ports["slurmctld"]}
SlurmdPort={self.ports["slurmd"]}
{auth}SlurmUser=root
SlurmdUser=root
StateSaveLocation={r}/state
SlurmdSpoolDir={r}/spool
SlurmctldPidFile={r}/slurmctld.pid
SlurmdPidFile={r}/slurmd.pid
SlurmctldLogFile={r}/slurmctld.log
SlurmdLogFile={r}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SlurmdParameters=config_overrides
GresTypes=gpu
DefMemPerCPU=1024
MailProg=/bin/true
MinJobAge=300
ReturnToService=2
SchedulerParameters=sched_interval=1
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports["slurmdbd"]}
AccountingStoragePass={r}/munge/munge.socket
AccountingStorageTRES=gres/gpu,gres/gpu:{GPU_TYPE}
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} \
Gres=gpu:{GPU_TYPE}:{N_GPUS} State=UNKNOWN
PartitionName={PARTITION} Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
"""
        )
        (r / "gres.conf").write_text(
            f"NodeName={self.host} Name=gpu Type={GPU_TYPE} File={r}/fakegpu[0-{N_GPUS - 1}]\n"
        )
        dbd = r / "slurmdbd.conf"
        dbd.write_text(
            f"""{auth}DbdAddr=127.0.0.1
DbdHost=localhost
DbdPort={self.ports["slurmdbd"]}
SlurmUser=root
PidFile={r}/slurmdbd.pid
LogFile={r}/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports["mysql"]}
StorageUser=root
StorageLoc=slurm_acct_db
"""
        )
        dbd.chmod(0o600)

    # -- processes -------------------------------------------------------------------
    def _spawn(self, name: str, cmd: list[str]) -> None:
        log = open(self.root / f"{name}.out", "ab")
        self.processes[name] = subprocess.Popen(
            cmd, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def _check_alive(self, name: str) -> None:
        process = self.processes[name]
        if process.poll() is not None:
            out = (self.root / f"{name}.out").read_text()[-3000:]
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{out}")

    def run(self, *cmd: str, timeout: float = 30, check: bool = True):
        """Run a client command (sacct, sbatch, ...) against this cluster."""
        result = subprocess.run(
            [_program(cmd[0]), *cmd[1:]],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed: {result.stdout}{result.stderr}")
        return result

    def _queue(self) -> list[str]:
        return self.run("squeue", "-h", "-o", "%i", timeout=10).stdout.split()

    def _succeeds(self, *cmd: str) -> bool:
        try:
            return self.run(*cmd, timeout=10, check=False).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def _link_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and not SYSTEM_CONF.exists():
            SYSTEM_CONF.unlink()  # left behind by a cluster that was killed
        if SYSTEM_CONF.exists() or SYSTEM_CONF.is_symlink():
            raise RuntimeError(
                f"{SYSTEM_CONF} exists: this machine has a Slurm configuration of its own, "
                "and the test cluster will not replace it"
            )
        SYSTEM_CONF.parent.mkdir(parents=True, exist_ok=True)
        SYSTEM_CONF.symlink_to(self.root / "slurm.conf")

    def _unlink_system_conf(self) -> None:
        if SYSTEM_CONF.is_symlink() and SYSTEM_CONF.readlink() == self.root / "slurm.conf":
            SYSTEM_CONF.unlink()

    def start(self, timeout: float = 90) -> SlurmCluster:
        r = self.root
        self._write_configs()
        self._link_system_conf()
        key = r / "munge" / "munge.key"
        subprocess.run(
            [_program("mungekey"), "--create", f"--keyfile={key}", "--force"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        key.chmod(0o600)
        self._spawn(
            "munged",
            [
                _program("munged"),
                "--foreground",
                "--force",
                f"--socket={r}/munge/munge.socket",
                f"--key-file={key}",
                f"--pid-file={r}/munge/munged.pid",
                f"--log-file={r}/munge/munged.log",
                f"--seed-file={r}/munge/munged.seed",
            ],
        )
        _wait("munged", lambda: (r / "munge" / "munge.socket").exists(), timeout)

        subprocess.run(
            [
                _program("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={r}/mysql",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=timeout,
        )
        self._spawn(
            "mariadbd",
            [
                _program("mariadbd"),
                "--no-defaults",
                f"--datadir={r}/mysql",
                f"--socket={r}/mysql.sock",
                f"--pid-file={r}/mysqld.pid",
                f"--port={self.ports['mysql']}",
                "--bind-address=127.0.0.1",
                "--user=root",
                "--innodb-buffer-pool-size=32M",
                "--skip-log-bin",
            ],
        )
        _wait("mariadbd", lambda: _port_open(self.ports["mysql"]), timeout, r / "mariadbd.out")

        self._spawn("slurmdbd", [_program("slurmdbd"), "-D"])
        _wait("slurmdbd", lambda: _port_open(self.ports["slurmdbd"]), timeout, r / "slurmdbd.log")
        self.run("sacctmgr", "-i", "add", "cluster", "coartest")
        self.run("sacctmgr", "-i", "add", "account", ACCOUNT, "Cluster=coartest")
        self.run("sacctmgr", "-i", "add", "user", "root", f"Account={ACCOUNT}")

        self._spawn("slurmctld", [_program("slurmctld"), "-D", "-i"])
        _wait("slurmctld", lambda: self._succeeds("scontrol", "ping"), timeout, r / "slurmctld.log")
        self._spawn("slurmd", [_program("slurmd"), "-D", "-N", self.host])
        _wait(
            "the node",
            lambda: "idle" in self.run("sinfo", "-h", "-o", "%t", check=False).stdout,
            timeout,
            r / "slurmd.log",
        )
        for name in self.processes:
            self._check_alive(name)
        return self

    def stop(self, timeout: float = 20) -> None:
        """Cancel what is left in the queue (job steps outlive slurmd), then stop the
        daemons by PID, newest first, killing what does not stop in time."""
        if "slurmctld" in self.processes and self.processes["slurmctld"].poll() is None:
            try:
                self.run("scancel", f"--partition={PARTITION}", check=False)
                _wait("an empty queue", lambda: not self._queue(), timeout)
            except (subprocess.TimeoutExpired, TimeoutError):
                pass  # stopping goes on; the daemons are stopped below regardless
        for process in reversed(list(self.processes.values())):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout)
        self.processes.clear()
        for pid_file in self.root.rglob("*.pid"):
            pid_file.unlink(missing_ok=True)
        self._unlink_system_conf()

    def __enter__(self) -> SlurmCluster:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


if __name__ == "__main__":
    # SIGTERM stops the cluster as cleanly as Ctrl-C does.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    with SlurmCluster() as cluster:
        print(f"export SLURM_CONF={cluster.root}/slurm.conf   # Ctrl-C stops the cluster")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
