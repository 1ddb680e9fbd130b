"""The oslo.messaging Notifier that carries volume.migration.* events."""

from __future__ import annotations

import oslo_messaging
from oslo_config import cfg


def make_notifier(conf: cfg.ConfigOpts) -> oslo_messaging.Notifier:
    """Notifier configured by [oslo_messaging_notifications] (driver, topics, transport_url).

    With ``driver = log`` the events appear in the service log; with no driver
    they are dropped (oslo.messaging's default).
    """
    transport = oslo_messaging.get_notification_transport(conf)
    return oslo_messaging.Notifier(transport, publisher_id=f"volume.{conf.host}")
