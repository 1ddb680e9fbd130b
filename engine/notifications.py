"""The oslo.messaging Notifier that carries volume.migration.* events.

oslo.messaging is imported only when a notifier is made (a service that runs
migrations): the commands that only read the database never pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from oslo_config import cfg

if TYPE_CHECKING:
    import oslo_messaging


def make_notifier(conf: cfg.ConfigOpts) -> oslo_messaging.Notifier:
    """Notifier configured by [oslo_messaging_notifications] (driver, topics, transport_url).

    With ``driver = log`` the events appear in the service log; with no driver
    they are dropped (oslo.messaging's default).
    """
    import oslo_messaging

    transport = oslo_messaging.get_notification_transport(conf)
    return oslo_messaging.Notifier(transport, publisher_id=f"volume.{conf.host}")
