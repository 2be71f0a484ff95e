"""What every seeder command shares: connection options, one error shape, the admin login."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.console import Console

from seeder.client import Login, SeederError, Services, ServiceUnreachable, admin_login
from seeder.config import URL_FIELDS, Config
from shopkit.registry import SERVICE_NAMES

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 audit violations, failed result checks or a refused command; "
    "2 usage error; 3 a service unreachable or not ready."
)


def _console() -> Console:
    return Console(highlight=False, soft_wrap=True)


def _error_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


# --- shared options ---------------------------------------------------------------------------

#: A service URL option's help, where it says more than the service's name.
URL_HELP = {
    "notifications": "Notifications service (the replay checks each order's notifications).",
}


def connection_options(command: F) -> F:
    """Service URLs, admin credentials, timeout and ``--wait`` (environment first, flags win)."""
    options = [
        click.option(
            f"--{name}-url",
            envvar=f"{name.upper()}_URL",
            show_envvar=True,
            help=URL_HELP.get(name, f"{name.capitalize()} service."),
        )
        for name in SERVICE_NAMES
    ]
    options += [
        click.option("--admin-username", envvar="ADMIN_USERNAME", show_envvar=True),
        click.option("--admin-password", envvar="ADMIN_PASSWORD", show_envvar=True),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 600),
            default=30.0,
            show_default=True,
            help="Seconds to wait for one answer.",
        ),
        click.option(
            "--wait",
            "wait_s",
            type=click.FloatRange(0, 3600),
            default=0.0,
            show_default=True,
            help="Wait up to this many seconds for the services' /readyz before starting.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _config(kwargs: dict[str, Any]) -> tuple[Config, float]:
    """Pop the connection options out of ``kwargs``: the configuration and the wait."""
    config = Config.from_env(
        **{name: kwargs.pop(name) for name in URL_FIELDS},
        admin_username=kwargs.pop("admin_username"),
        admin_password=kwargs.pop("admin_password"),
        read_timeout_s=kwargs.pop("timeout"),
    )
    return config, float(kwargs.pop("wait_s"))


def reports_errors(command: F) -> F:
    """Turn :class:`SeederError` into one clear message and its exit code (never a traceback)."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except SeederError as exc:
            _error_console().print(f"[bold red]error:[/] {exc}")
            if isinstance(exc, ServiceUnreachable):
                _error_console().print(
                    "Is it running? Set the URL with the environment variable "
                    f"{exc.service.upper()}_URL or the --{exc.service}-url flag."
                    if exc.service in SERVICE_NAMES
                    else "Are the services running?"
                )
            sys.exit(exc.exit_code)

    return wrapper  # type: ignore[return-value]


def connect(
    kwargs: dict[str, Any], needed: tuple[str, ...], pool_size: int = 16
) -> tuple[Services, Login, Console]:
    """Pop the connection options, wait for the ``needed`` services, log in as admin."""
    config, wait_s = _config(kwargs)
    console = _console()
    services = Services(config, pool_size=pool_size)
    _ready(services, needed, wait_s, console)
    return services, admin_login(services), console


def _ready(services: Services, needed: tuple[str, ...], wait_s: float, console: Console) -> None:
    if wait_s > 0:
        console.print(f"Waiting up to {wait_s:g} s for {', '.join(needed)} to be ready...")
    services.check_ready(needed, wait_s)
