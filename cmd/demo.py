"""`volmigrate demo`: a real migration between two local backends, shown step by step.

Each step is the command an administrator would type, run for real in this
process, against a configuration in a temporary directory.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile

from volmigrate.cmd import output
from volmigrate.engine.units import parse_volume_size

DEMO_HOST = "demo"
DEMO_RATE = 128 * 1024 ** 2  # slow enough to watch the progress bar

CONFIG = """\
[DEFAULT]
state_path = {state}
host = {host}
enabled_backends = local-a,local-b
migration_progress_report_interval = 0.5
# Only so that the demo's progress bar can be watched; 0 (the default) is unlimited.
volume_copy_bps_limit = {rate}
log_file = {log}

[local-a]
volume_driver = local

[local-b]
volume_driver = local

[oslo_messaging_notifications]
driver = log
"""


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run(size_text: str, keep: bool = False) -> int:
    from volmigrate.cmd.main import main  # the same entry point as the shell's

    size = parse_volume_size(size_text)
    console = output.console()
    workdir = tempfile.mkdtemp(prefix="volmigrate-demo-")
    conf_path = os.path.join(workdir, "volmigrate.conf")
    log_path = os.path.join(workdir, "volmigrate.log")
    with open(conf_path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(state=os.path.join(workdir, "state"), host=DEMO_HOST,
                              rate=DEMO_RATE, log=log_path))

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
        return 0 if (rc == 0 and rc_show == 0 and same) else 1
    finally:
        if keep:
            console.print(f"Kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
