"""What the benchmarks share: a service with two local backends in a work directory."""

import os
import warnings

warnings.filterwarnings("ignore", message=r"\s*Eventlet is deprecated")

from oslo_config import cfg  # noqa: E402

from volmigrate.engine import MigrationService  # noqa: E402

NODE = "bench"
CONFIG = """\
[DEFAULT]
state_path = {state}
host = bench
enabled_backends = a,b
{extra}
[a]
volume_driver = local
[b]
volume_driver = local
"""


def write_config(work: str, **defaults) -> str:
    """A config file in `work` (state under work/state); `defaults` go to [DEFAULT]."""
    path = os.path.join(work, "bench.conf")
    extra = "".join(f"{k} = {v}\n" for k, v in defaults.items())
    with open(path, "w", encoding="utf-8") as f:
        f.write(CONFIG.format(state=os.path.join(work, "state"), extra=extra))
    return path


def service(conf_path: str) -> MigrationService:
    conf = cfg.ConfigOpts()
    conf(["--config-file", conf_path])
    return MigrationService(conf)
