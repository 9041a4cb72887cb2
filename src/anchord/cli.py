"""The `anchord` command. Each subcommand lives beside the layer it drives; this file
only lists them, imported on first use so that `anchord --help` stays fast."""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> (module, attribute): the click command for `anchord NAME`.
_COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("anchord.frontend.command", "serve"),
    "testbed": ("anchord.testbed.command", "testbed"),
    "nta": ("anchord.control.cli", "nta"),
    "rpl": ("anchord.testbed.replay.command", "rpl"),
    "replay": ("anchord.testbed.incident.command", "replay"),
    "config-defaults": ("anchord.control.cli", "config_defaults"),
    "cache": ("anchord.control.cli", "cache"),
    "demo": ("anchord.testbed.demo", "demo"),
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> Any:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        try:
            module = importlib.import_module(target[0])
        except ModuleNotFoundError as e:
            if e.name and target[0].startswith(e.name):
                return None  # a command whose module this build does not have
            raise
        return getattr(module, target[1])

    def list_commands_present(self, ctx: click.Context) -> list[str]:
        return [n for n in self.list_commands(ctx) if self.get_command(ctx, n) is not None]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands_present(ctx):
            cmd = self.get_command(ctx, name)
            rows.append((name, cmd.get_short_help_str(70)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="anchord")
def main() -> None:
    """anchord: a DNSSEC-validating recursive resolver that says why when it cannot answer."""
