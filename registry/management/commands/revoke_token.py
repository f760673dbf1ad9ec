"""manage.py revoke_token NAME: every gateway process refuses the token within a second."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.models import ApiToken


class Command(BaseCommand):
    help = "Revoke an API token by name."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name")

    def handle(self, *args: object, **options: object) -> None:
        token = ApiToken.objects.filter(name=str(options["name"])).first()
        if token is None:
            known = ", ".join(ApiToken.objects.values_list("name", flat=True)[:50]) or "none"
            raise CommandError(f"no token named '{options['name']}' (tokens: {known})")
        token.revoke()
        self.stdout.write(f"Revoked token '{token.name}'.")
