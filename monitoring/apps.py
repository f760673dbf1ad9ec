from __future__ import annotations

from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_save


class MonitoringConfig(AppConfig):
    name = "monitoring"
    verbose_name = "Monitoring"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The call path announces every call; the history and the metrics listen (proxy never imports monitoring).
        from proxy.calls import tool_called

        from .history import on_tool_called

        tool_called.connect(on_tool_called, dispatch_uid="monitoring.history")
        post_save.connect(_server_saved, sender="registry.Server", dispatch_uid="monitoring.server_saved")


def _server_saved(sender: Any, instance: Any, **kwargs: Any) -> None:
    # Other processes pick the change up from the database within seconds (history.PAYLOAD_SERVERS_TTL).
    from .history import writer

    writer.note_server(instance.name, instance.store_call_payloads)
