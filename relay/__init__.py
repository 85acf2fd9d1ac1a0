"""The relay: sends the outbox (verdicts and alarms, see store.outbox and wire.verdicts) to MQTT and a webhook."""
