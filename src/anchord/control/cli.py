"""Operator commands that talk to a running resolver or print its settings."""

from __future__ import annotations

import click

from anchord.control.config import defaults_as_toml


@click.command("config-defaults")
def config_defaults() -> None:
    """Print every configuration option with its default, as TOML."""
    click.echo(defaults_as_toml())


@click.group()
def nta() -> None:
    """Negative trust anchors (RFC 7646) on a running resolver."""
