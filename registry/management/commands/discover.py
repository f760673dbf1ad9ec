"""manage.py discover [NAME ...]: (re)discover servers' tools, a progress line per server."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.management.commands.import_servers import discover_each
from registry.models import Server


class Command(BaseCommand):
    help = "Discover the tools of the named servers (default: every enabled server)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("names", nargs="*", help="server names (default: all enabled servers)")

    def handle(self, *args: object, **options: object) -> None:
        names = list(options["names"])  # type: ignore[arg-type]
        if names:
            servers = list(Server.objects.filter(name__in=names))
            missing = sorted(set(names) - {s.name for s in servers})
            if missing:
                raise CommandError(f"no server named {', '.join(missing)} (see: manage.py export_servers)")
        else:
            servers = list(Server.objects.enabled())
        if not servers:
            self.stdout.write("no servers to discover: import some with manage.py import_servers")
            return
        failed = discover_each(self, servers)
        if failed:
            raise CommandError(f"discovery failed for {len(failed)} of {len(servers)} servers: {', '.join(failed)}")
