"""manage.py ensure_admin: create the first admin login for a new gateway and print it."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser


class Command(BaseCommand):
    help = "Create a superuser with a generated password if none exists; print the login."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")

    def handle(self, *args: object, **options: object) -> None:
        User = get_user_model()
        username = str(options["username"])
        saved = settings.DATA_DIR / "admin_password"
        if User.objects.filter(is_superuser=True).exists():
            if User.objects.filter(username=username).exists() and saved.exists():
                self.stdout.write(f"admin login: {username} / {saved.read_text().strip()}")
            else:
                self.stdout.write("an admin user exists already (manage.py changepassword to reset it)")
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        # Kept (mode 600, in the gitignored data dir) so the start script can show it again.
        saved.write_text(password + "\n")
        saved.chmod(0o600)
        self.stdout.write(f"admin login: {username} / {password}")
