"""Tool pinning: a tool is served only while its definition is the one an admin approved.

Each tool's whole definition as announced (name, title, description, input and output schema,
annotations) is hashed: SHA-256 over canonical JSON (`registry.models.definition_hash`). When a
rediscovery finds a different hash, the tool is quarantined: it leaves `tool_search` and the tools
list, and calling it explains why, until an admin approves the new definition after seeing the
diff. Tools seen for the first time are approved at once when MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS
is on (the default); off, they wait for approval too.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .catalog import bump_version
from .sanitize import INVISIBLE

if TYPE_CHECKING:  # importable before Django's apps are ready (the call path imports it)
    from .models import Tool

AUTO_APPROVER = "auto-approved (new tool)"
CHANGED = "changed"  # approved once, then the server changed the definition
NEW = "new"  # never approved (auto-approval is off)


def quarantine_reason(definition_hash: str, approved_hash: str) -> str | None:
    """Why a tool with these hashes is not served, or None when it is."""
    if definition_hash == approved_hash:
        return None
    return CHANGED if approved_hash else NEW


def quarantine_message(tool_name: str, reason: str) -> str:
    """The error a caller of a quarantined tool gets: what happened and who can fix it."""
    if reason == NEW:
        return (
            f"tool '{tool_name}' is waiting for approval: new tools need an admin's approval "
            "(MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS is off); approve it in the admin"
        )
    return (
        f"tool '{tool_name}' is quarantined: its definition changed since it was approved; "
        "approve it in the admin (Tools, 'quarantined') after reviewing the change"
    )


def pin_new_tool(tool: Tool) -> None:
    """Approve a tool seen for the first time, if the settings say so (before it is first saved)."""
    if settings.MCP_GATEWAY_AUTO_APPROVE_NEW_TOOLS:
        _set_approved(tool, by=AUTO_APPROVER)


def _set_approved(tool: Tool, *, by: str) -> None:
    tool.approved_definition_hash = tool.definition_hash
    tool.approved_definition = tool.announced_definition
    tool.approved_at = timezone.now()
    tool.approved_by = by[:150]


@transaction.atomic
def approve_tools(tools: Iterable[Tool], *, by: str, reviewed: dict[int, str] | None = None) -> list[str]:
    """Approve the current definitions of these tools; the namespaced names of those that were waiting.

    `reviewed` maps a tool's pk to the definition hash the admin was shown: a tool whose definition
    changed again since then is left quarantined (the admin approves only what they saw).
    """
    approved = []
    for tool in tools:
        if not tool.quarantined:
            continue
        if reviewed is not None and reviewed.get(tool.pk) != tool.definition_hash:
            continue
        _set_approved(tool, by=by)
        tool.save(update_fields=["approved_definition_hash", "approved_definition", "approved_at", "approved_by"])
        approved.append(tool.namespaced_name)
    if approved:
        bump_version()
    return approved


def visible_invisibles(text: str) -> str:
    """Invisible characters written out (⟨U+200B⟩), so a reviewer sees what a model would read."""
    return INVISIBLE.sub(lambda m: f"⟨U+{ord(m.group(0)):04X}⟩", text)


def pretty_definition(definition: dict[str, Any] | None) -> str:
    if definition is None:
        return ""
    return visible_invisibles(json.dumps(definition, indent=2, sort_keys=True, ensure_ascii=False))


def definition_diff(tool: Tool) -> list[str]:
    """A unified diff from the approved definition to the announced one (empty when they are equal)."""
    before = pretty_definition(tool.approved_definition).splitlines()
    after = pretty_definition(tool.announced_definition or tool.definition()).splitlines()
    label = "approved" if tool.approved_definition is not None else "approved (none yet)"
    return list(difflib.unified_diff(before, after, fromfile=label, tofile="announced now", lineterm="", n=3))
