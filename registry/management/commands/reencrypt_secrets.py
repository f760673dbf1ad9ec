"""manage.py reencrypt_secrets: after rotating SECRET_KEY, re-encrypt every saved secret with the new key."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from registry.encryption import UnreadableSecrets
from registry.models import Server


class Command(BaseCommand):
    help = (
        "Re-encrypt saved auth headers and stdio env values with the current SECRET_KEY (rows readable only with "
        "a key in SECRET_KEY_FALLBACKS move to the new key). Then the old key can leave DJANGO_SECRET_KEY_FALLBACKS."
    )

    def handle(self, *args: object, **options: object) -> None:
        done, unreadable = 0, []
        for server in Server.objects.order_by("name"):
            if isinstance(server.auth_headers, UnreadableSecrets) or isinstance(server.env, UnreadableSecrets):
                unreadable.append(server.name)
                continue
            # Saving writes every value encrypted with the first key (SECRET_KEY).
            Server.objects.filter(pk=server.pk).update(auth_headers=server.auth_headers, env=server.env)
            done += 1
        self.stdout.write(f"Re-encrypted the secrets of {done} servers with the current SECRET_KEY.")
        if unreadable:
            raise CommandError(
                f"no configured key decrypts the saved secrets of: {', '.join(unreadable)}; put the key they were "
                "saved with in DJANGO_SECRET_KEY_FALLBACKS and run this again, or re-enter them in the admin"
            )
