"""manage.py create_token NAME [--expires-days N]: a bearer token for /mcp and the REST API, printed once."""

from __future__ import annotations

from datetime import timedelta

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from registry.models import ApiToken


class Command(BaseCommand):
    help = "Create an API token and print it once (only its hash is stored). Revoke it with revoke_token NAME."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who uses it, e.g. claude-desktop")
        parser.add_argument("--expires-days", type=int, help="days until it stops working (default: never)")

    def handle(self, *args: object, **options: object) -> None:
        name = str(options["name"])
        days = options["expires_days"]
        if days is not None and int(days) < 1:  # type: ignore[call-overload]
            raise CommandError("--expires-days must be at least 1")
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"a token named '{name}' exists; choose another name, or revoke_token {name} first")
        expires_at = timezone.now() + timedelta(days=int(days)) if days else None  # type: ignore[call-overload]
        try:
            _, raw = ApiToken.objects.create_token(name, expires_at=expires_at)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        self.stdout.write(raw)
        until = f"until {expires_at:%Y-%m-%d %H:%M} UTC" if expires_at else "without expiry"
        self.stderr.write(f"Token '{name}' created, valid {until}. It is shown only this once.")
