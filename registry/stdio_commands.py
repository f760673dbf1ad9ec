"""Who may register the commands stdio servers run, and the exact command the admin shows before saving one.

A stdio server's command, arguments and environment are a program the gateway runs on its host:
setting them is as strong as a shell there. In the admin only superusers may create a stdio server
or change those fields (staff with the ordinary server permissions manage HTTP servers and the
rest of a stdio server's settings); `manage.py import_servers` may, since whoever runs it already
has the host. The command is executed directly, never through a shell (proxy/stdio.py), and the
admin asks to confirm the exact command line (shlex-quoted, environment names only) before saving.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.crypto import constant_time_compare, salted_hmac
from django.utils.html import format_html

COMMAND_FIELDS = ("command", "args", "env", "clear_env")
REFUSAL = (
    "Only a superuser can register a stdio server or change its command, arguments or environment: "
    "the gateway runs that command on its host. Ask a superuser, or register it with manage.py import_servers."
)


def may_register_commands(user: Any) -> bool:
    return bool(user is not None and user.is_active and user.is_superuser)


def command_line(command: str, args: Sequence[str]) -> str:
    """The command as a shell would have to be given it to run exactly this (the gateway uses no shell)."""
    return shlex.join([command, *args])


def environment_names(env: Mapping[str, str] | None) -> str:
    return ", ".join(sorted(env or {}))


def confirmation_code(command: str, args: Sequence[str], env: Mapping[str, str] | None) -> str:
    """Ties a confirmation to exactly the command shown; keyed, so it reveals nothing of the env values."""
    payload = json.dumps([command, list(args), dict(sorted((env or {}).items()))], ensure_ascii=False)
    return salted_hmac("registry.stdio-command-confirmation", payload).hexdigest()[:32]


class CommandConfirmationField(forms.CharField):
    widget = forms.HiddenInput

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, **kwargs)


def check_command_change(form: forms.ModelForm, data: dict[str, Any], env: Mapping[str, str] | None) -> None:
    """Refuse a non-superuser's change to what a stdio server runs; ask a superuser to confirm the command.

    `env` is the environment as it will be saved (the admin keeps saved values when left blank).
    """
    instance = form.instance
    if data.get("transport", instance.transport) != "stdio":
        return
    command = data.get("command", "") if "command" in form.fields else instance.command
    args = (data.get("args") or []) if "args" in form.fields else list(instance.args or [])
    env = env if "env" in form.fields else dict(instance.env or {})
    changed = (
        instance.pk is None
        or instance.transport != "stdio"
        or command != instance.command
        or list(args) != list(instance.args or [])
        or dict(env or {}) != dict(instance.env or {})
    )
    if not changed:
        return
    if not may_register_commands(getattr(form, "user", None)):
        raise ValidationError(REFUSAL, code="stdio_needs_superuser")
    if not command or not isinstance(args, list):
        return  # the model's own validation names what is missing
    code = confirmation_code(command, args, env)
    if constant_time_compare(data.get("command_confirmation") or "", code):
        return
    # Shown once more with the code in a hidden field: saving again confirms exactly this command.
    form.data = form.data.copy()
    form.data[form.add_prefix("command_confirmation")] = code
    names = environment_names(env)
    raise ValidationError(
        format_html(
            "Check the command before it is saved. The gateway will run, without a shell:"
            "<br><code style='white-space:pre-wrap'>{}</code><br>{}Save again to confirm.",
            command_line(command, args),
            f"with the environment variables {names} (values not shown). " if names else "",
        ),
        code="confirm_command",
    )
