"""manage.py import_servers [PATH]: register the servers of a config file, all or nothing."""

from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from registry.config_files import ConfigError, ServerConfig, import_servers, read_config_file
from registry.discovery import discover_server_tools
from registry.models import Server


class Command(BaseCommand):
    help = "Import servers from server_config.json (original or mcpServers format). Validates the whole file first."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("path", nargs="?", help="config file (default: SERVER_CONFIG_PATH)")
        parser.add_argument("--prune", action="store_true", help="delete servers that are not in the file")
        parser.add_argument("--discover", action="store_true", help="discover the tools of the imported servers")
        parser.add_argument("--url", help="register one streamable HTTP server at this URL instead of a file")
        parser.add_argument("--name", help="with --url: the server's name")

    def handle(self, *args: object, **options: object) -> None:
        if options["url"]:
            if not options["name"]:
                raise CommandError("--url needs --name")
            configs = [ServerConfig(name=str(options["name"]), transport="http", url=str(options["url"]))]
            source = str(options["url"])
        else:
            source = str(options["path"] or settings.SERVER_CONFIG_PATH)
            try:
                configs = read_config_file(source)
            except ConfigError as exc:
                raise CommandError(f"{exc}\nNothing was imported.") from None
        try:
            report = import_servers(configs, prune=bool(options["prune"]))
        except ConfigError as exc:
            raise CommandError(f"{exc}\nNothing was imported.") from None
        for label, names in (
            ("created", report.created),
            ("updated", report.updated),
            ("unchanged", report.unchanged),
            ("removed", report.removed),
        ):
            if names:
                self.stdout.write(f"{label}: {', '.join(names)}")
        if not report.changed_anything:
            self.stdout.write(f"{source}: nothing to change ({len(report.unchanged)} servers already up to date)")
        else:
            self.stdout.write(
                self.style.SUCCESS(
                    f"{source}: {len(report.created)} created, {len(report.updated)} updated, "
                    f"{len(report.unchanged)} unchanged, {len(report.removed)} removed"
                )
            )
        if options["discover"]:
            names = [c.name for c in configs]
            servers = Server.objects.filter(name__in=names, enabled=True).order_by("name")
            failed = discover_each(self, list(servers))
            if failed:
                self.stderr.write(f"discovery failed for: {', '.join(failed)}")


def discover_each(command: BaseCommand, servers: list[Server]) -> list[str]:
    """Discover servers one by one with a progress line each; return the names that failed."""
    failed = []
    total = len(servers)
    for i, server in enumerate(servers, 1):
        command.stdout.write(f"[{i}/{total}] discovering {server.name} ...", ending="")
        command.stdout.flush()
        result = discover_server_tools(server)
        if result.ok:
            command.stdout.write(command.style.SUCCESS(f" {result.summary.split(': ', 1)[1]}"))
        else:
            command.stdout.write(command.style.ERROR(f" failed: {result.error}"))
            failed.append(server.name)
    return failed
