"""`lineguard relay`: send verdicts and alarms from the outbox to MQTT and/or a webhook (see relay/)."""

from __future__ import annotations

import argparse

from lineguard.settings import Settings


def register(commands: argparse._SubParsersAction) -> None:
    from relay.mqtt import DEFAULT_RECONNECT_MAX_S

    relay = commands.add_parser(
        "relay", help="send verdicts and alarms to the MQTT broker (LINEGUARD_MQTT_URL) and/or webhook (LINEGUARD_WEBHOOK_URL)"
    )
    relay.add_argument(
        "--reconnect-max", type=float, default=DEFAULT_RECONNECT_MAX_S,
        help=f"longest wait between reconnections to the broker, seconds (default {DEFAULT_RECONNECT_MAX_S:g})",
    )
    relay.add_argument("--webhook-retry-max", type=float, default=30.0, help="longest wait between webhook retries, seconds (default 30)")
    relay.set_defaults(handler=run_relay_command)


def relay_targets(settings: Settings):  # noqa: ANN201 - relay.runner.RelayTargets, imported when used
    from relay.runner import RelayTargets

    return RelayTargets(settings.mqtt_url, settings.webhook_url, settings.webhook_secret)


def run_relay_command(args: argparse.Namespace) -> int:
    from lineguard.services import open_store
    from lineguard.signals import stop_on_signals
    from relay.runner import RelayOptions, run_relay

    settings = Settings.from_environment()
    options = RelayOptions(reconnect_max_s=args.reconnect_max, webhook_retry_max_s=args.webhook_retry_max)
    engine = open_store(settings)
    try:
        with stop_on_signals() as stop:
            run_relay(engine, relay_targets(settings), stop, options)
    finally:
        engine.dispose()
    return 0
