"""`volmigrate demo`: real migrations, shown step by step.

First between two local backends, then onto a Storwize array and from one of
its pools to another, moved by the array itself. The array is volmigrate's
Storwize *simulator* (an SSH server on 127.0.0.1 that runs the array's CLI
against files); the demo says so. Where Ceph is installed, the volume then
goes onto a real single-node Ceph cluster (tools/ceph_cluster.py, started
for the demo) and from one of its pools to another by Ceph's live
migration; where it is not, the demo says so and skips those steps. Each step is the command an administrator
would type, run for real in this process, against a configuration in a
temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from volmigrate.cli import output
from volmigrate.common.units import parse_volume_size

DEMO_HOST = "demo"
DEMO_RATE = 128 * 1024 ** 2  # slow enough to watch the progress bar

CONFIG = """\
[DEFAULT]
state_path = {state}
host = {host}
enabled_backends = local-a,local-b,array{ceph_backends}
migration_progress_report_interval = 0.5
# Only so that the demo's progress bar can be watched; 0 (the default) is unlimited.
volume_copy_bps_limit = {rate}
log_file = {log}

[local-a]
volume_driver = local

[local-b]
volume_driver = local

# volmigrate's Storwize simulator, started by the demo (not a real array).
[array]
volume_driver = storwize
san_ip = 127.0.0.1
san_ssh_port = {array_port}
san_login = superuser
san_password = {array_password}
storwize_svc_volpool_name = pool1,pool2

{ceph_sections}[oslo_messaging_notifications]
driver = log
"""

CEPH_SECTIONS = """\
# Two pools of a real single-node Ceph cluster started by the demo.
[ceph-a]
volume_driver = rbd
rbd_pool = volumes-a
rbd_ceph_conf = {conf}

[ceph-b]
volume_driver = rbd
rbd_pool = volumes-b
rbd_ceph_conf = {conf}

"""
# In the source tree, beside the package's folders (not installed with it).
CEPH_SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "ceph_cluster.py"


def _start_ceph(console, workdir: str):
    """A single-node Ceph with pools volumes-a and volumes-b, or None (and why)."""
    from volmigrate.drivers import rbd_client

    if not CEPH_SCRIPT.exists():
        console.print("[dim]tools/ceph_cluster.py is not here (not a source tree): "
                      "the Ceph steps are skipped[/]")
        return None
    spec = importlib.util.spec_from_file_location("ceph_cluster", CEPH_SCRIPT)
    ceph_cluster = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(ceph_cluster)
    missing = ceph_cluster.missing_packages()
    if missing or not rbd_client.available():
        console.print(f"[dim]Ceph is not installed here, so the Ceph steps are skipped "
                      f"(apt-get install {' '.join(ceph_cluster.PACKAGES)})[/]")
        return None
    console.print(f"\n[bold cyan]$ python3 tools/ceph_cluster.py {workdir}/ceph start[/]   "
                  f"[dim]# a real single-node Ceph cluster (mon, osd, mgr) on 127.0.0.1[/]")
    cluster = ceph_cluster.CephCluster(os.path.join(workdir, "ceph"))
    try:
        cluster.start()
        for pool in ("volumes-a", "volumes-b"):
            cluster.create_pool(pool)
    except ceph_cluster.CephClusterError as exc:
        console.print(f"[red]the Ceph cluster did not start ({exc}); the Ceph steps are "
                      f"skipped[/]")
        cluster.destroy()
        return None
    console.print(f"Ceph {cluster.fsid} is up; pools volumes-a and volumes-b")
    return cluster


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(size_text: str, keep: bool = False) -> int:
    from volmigrate.cli.main import main  # the same entry point as the shell's

    size = parse_volume_size(size_text)
    console = output.console()
    workdir = tempfile.mkdtemp(prefix="volmigrate-demo-")
    conf_path = os.path.join(workdir, "volmigrate.conf")
    log_path = os.path.join(workdir, "volmigrate.log")
    array_dir = os.path.join(workdir, "storwize-simulator")
    password = os.urandom(8).hex()
    simulator_args = ["simulator", "storwize", "--listen", "127.0.0.1:0", "--data-dir",
                      array_dir, "--pools", "pool1,pool2", "--migrate-rate", str(DEMO_RATE),
                      "--password", password]
    console.print(f"[bold cyan]$ volmigrate {' '.join(simulator_args)} &[/]   [dim]# a "
                  f"SIMULATED Storwize array (SSH on 127.0.0.1), not real hardware[/]")
    simulator = subprocess.Popen(
        [sys.executable, "-c", "import sys; from volmigrate.cli.main import main; "
                               "sys.exit(main(sys.argv[1:]))", *simulator_args],
        stdout=subprocess.PIPE, text=True)
    ready = simulator.stdout.readline().strip()
    console.print(ready)
    cluster = _start_ceph(console, workdir)
    with open(conf_path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(
            state=os.path.join(workdir, "state"), host=DEMO_HOST, rate=DEMO_RATE,
            log=log_path, array_password=password, array_port=ready.rpartition(":")[2],
            ceph_backends=",ceph-a,ceph-b" if cluster else "",
            ceph_sections=CEPH_SECTIONS.format(conf=cluster.conf) if cluster else ""))

    def step(text: str, *args: str, capture: bool = False) -> tuple[int, str]:
        console.print(f"\n[bold cyan]$ volmigrate --config-file {conf_path} "
                      f"{' '.join(args)}[/]   [dim]# {text}[/]")
        if not capture:
            return main(["--config-file", conf_path, *args]), ""
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main(["--config-file", conf_path, *args])
        return rc, buf.getvalue()

    try:
        console.print(f"[bold]volmigrate demo[/] in {workdir} (config: {conf_path})")
        rc, out = step("a volume on backend local-a", "create", "--size", size_text, "--host",
                       f"{DEMO_HOST}@local-a", "--name", "demo-volume", "--format", "json",
                       capture=True)
        if rc:
            return rc
        volume = json.loads(out)
        console.print_json(out)
        source_path = volume["provider_location"]
        dd = ["dd", "if=/dev/urandom", f"of={source_path}", "bs=1M",
              f"count={size // (1 << 20) or 1}", "conv=notrunc", "status=none"]
        console.print(f"\n[bold cyan]$ {' '.join(dd)}[/]   [dim]# fill it with random data[/]")
        subprocess.run(dd, check=True)
        before = _sha256(source_path)
        console.print(f"sha256 on local-a: {before}")

        rc, _ = step("move it, locked, with a live progress bar", "migrate", volume["id"],
                     f"{DEMO_HOST}@local-b", "--lock-volume", "--wait")
        rc_show, out = step("where it is now", "show", volume["id"], "--format", "json",
                            capture=True)
        after_volume = json.loads(out)
        console.print_json(out)
        after = _sha256(after_volume["provider_location"])
        same = after == before
        console.print(f"sha256 on local-b: {after}  "
                      + ("[bold green]identical[/]" if same else "[bold red]DIFFERENT[/]"))
        step("volumes, hidden ones included: no destination left behind", "list", "--all")
        step("the migration's last progress", "progress", volume["id"])

        rc_array, _ = step("copy it onto the array's pool1 (a host copy with dd)", "migrate",
                           volume["id"], f"{DEMO_HOST}@array#pool1", "--wait")
        rc_pool, _ = step("pool1 -> pool2: the array moves it itself (migratevdisk), "
                          "progress from lsmigrate", "migrate", volume["id"],
                          f"{DEMO_HOST}@array#pool2", "--wait")
        rc_show2, out = step("where it is now", "show", volume["id"], "--format", "json",
                             capture=True)
        on_array = json.loads(out)
        console.print_json(out)
        vdisk = f"volume-{on_array['name_id'] or on_array['id']}"
        in_pool2 = _sha256(os.path.join(array_dir, "pool2", vdisk))
        same = same and in_pool2 == before
        console.print(f"sha256 of vdisk {vdisk} in pool2: {in_pool2}  "
                      + ("[bold green]identical[/]" if in_pool2 == before
                         else "[bold red]DIFFERENT[/]"))
        rc_ceph = 0
        if cluster is not None:
            rc_ceph, same_in_ceph = _ceph_steps(step, console, cluster, volume["id"], before)
            same = same and same_in_ceph
        step("how each migration was done", "flow", "list")

        console.print("\n[bold]Notifications sent[/] (oslo.messaging, driver = log):")
        with open(log_path, encoding="utf-8") as f:
            for line in f:
                if "volume.migration." in line and "oslo.messaging.notification" in line:
                    event = json.loads(line[line.index("{"):])
                    payload = event["payload"]
                    console.print(f"  {event['event_type']:<26} {payload['percent']:>5}%  "
                                  f"{payload['bytes_copied']} of {payload['bytes_total']} "
                                  f"bytes, migration_status {payload['migration_status']}")
        console.print(f"\nService log: {log_path}")
        return 0 if (rc == 0 and rc_array == 0 and rc_pool == 0 and rc_show == 0
                     and rc_show2 == 0 and rc_ceph == 0 and same) else 1
    finally:
        simulator.terminate()
        simulator.wait()
        if cluster is not None:
            cluster.destroy()
        if keep:
            console.print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def _ceph_steps(step, console, cluster, volume_id: str, before: str) -> tuple[int, bool]:
    """Array -> Ceph pool volumes-a (a host copy through librbd, unwritten objects
    skipped) -> pool volumes-b (Ceph's live migration); the image checked by
    ``rbd export``."""
    rc_to, _ = step("onto Ceph, pool volumes-a: a host copy through librbd", "migrate",
                    volume_id, f"{DEMO_HOST}@ceph-a", "--wait")
    rc_live, _ = step("volumes-a -> volumes-b: Ceph moves it itself (rbd migration "
                      "prepare/execute/commit)", "migrate", volume_id, f"{DEMO_HOST}@ceph-b",
                      "--wait")
    rc_show, out = step("where it is now", "show", volume_id, "--format", "json",
                        capture=True)
    in_ceph = json.loads(out)
    console.print_json(out)
    image = f"volumes-b/volume-{in_ceph['name_id'] or in_ceph['id']}"
    export = subprocess.run(["rbd", "--conf", str(cluster.conf), "export", image, "-"],
                            capture_output=True, check=False)
    digest = hashlib.sha256(export.stdout).hexdigest() if export.returncode == 0 else "?"
    console.print(f"sha256 of `rbd export {image}`: {digest}  "
                  + ("[bold green]identical[/]" if digest == before
                     else "[bold red]DIFFERENT[/]"))
    return (rc_to or rc_live or rc_show), digest == before
