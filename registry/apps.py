from __future__ import annotations

from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "MCP gateway"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .catalog import bump_version
        from .models import Server, Tool

        def changed(**kwargs: object) -> None:
            bump_version()

        # weak=False: `changed` is local to this method and would otherwise be collected at once.
        for model in (Server, Tool):
            post_save.connect(changed, sender=model, weak=False, dispatch_uid=f"catalog-{model.__name__}-save")
            post_delete.connect(changed, sender=model, weak=False, dispatch_uid=f"catalog-{model.__name__}-delete")

        from . import checks  # noqa: F401  (registers the system checks)
        from .api_tokens import bump_token_version
        from .models import ApiToken

        def tokens_changed(**kwargs: object) -> None:
            bump_token_version()

        post_save.connect(tokens_changed, sender=ApiToken, weak=False, dispatch_uid="api-tokens-save")
        post_delete.connect(tokens_changed, sender=ApiToken, weak=False, dispatch_uid="api-tokens-delete")
