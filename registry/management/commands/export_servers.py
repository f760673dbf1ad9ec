"""manage.py export_servers: write the registry back as a config file (secrets left out unless asked)."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandParser

from registry.config_files import export_servers
from registry.models import Server


class Command(BaseCommand):
    help = "Print the registered servers as server_config.json. Header and env values become ${VAR} placeholders."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--format", choices=["servers", "mcpServers"], default="servers")
        parser.add_argument("--include-secrets", action="store_true", help="write header and env values in clear")
        parser.add_argument("-o", "--output", help="write to this file instead of standard output")

    def handle(self, *args: object, **options: object) -> None:
        data = export_servers(
            list(Server.objects.order_by("name")),
            include_secrets=bool(options["include_secrets"]),
            fmt=str(options["format"]),
        )
        text = json.dumps(data, indent=2) + "\n"
        if options["output"]:
            with open(str(options["output"]), "w", encoding="utf-8") as fh:
                fh.write(text)
            self.stdout.write(
                f"wrote {len(data.get('servers', data.get('mcpServers', [])))} servers to {options['output']}"
            )
        else:
            self.stdout.write(text, ending="")
