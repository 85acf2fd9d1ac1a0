"""The MQTT sink: publishes outbox messages with QoS 1 and reports which the broker acknowledged.

One paho client per relay, connected in the background and reconnecting by itself (from
`RECONNECT_MIN_S`, doubling up to the configured cap). A message counts as sent only once its PUBACK
arrived; paho sends the messages in flight again, in order, after a reconnect, so an outage only
delays them. A relay that dies with messages in flight sends them again when restarted (at least once).

paho tells of a new connection (`connections`) before it sends the old one's messages again: a caller
that keeps order publishes nothing new until those are acknowledged (relay.runner does).
"""

from __future__ import annotations

import logging
import ssl
import threading
from urllib.parse import parse_qs, unquote, urlsplit

from paho.mqtt.client import Client, ConnectFlags, DisconnectFlags
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

logger = logging.getLogger(__name__)

#: First wait before reconnecting to a broker that went away, seconds; doubles up to the cap.
RECONNECT_MIN_S = 0.25
#: Default cap of the reconnect wait, seconds.
DEFAULT_RECONNECT_MAX_S = 2.0
#: Seconds between keepalive pings: a broker that vanished without closing is noticed within 1.5x this.
KEEPALIVE_S = 10


class MqttSender:
    """A connected (or reconnecting) publisher to the broker of `url` (``mqtt://`` or ``mqtts://``).

    ``mqtts://`` verifies the broker's certificate against the system's CAs, or the file named by
    ``?ca_certs=/path/ca.pem`` in the URL.
    """

    def __init__(self, url: str, client_id: str, reconnect_max_s: float = DEFAULT_RECONNECT_MAX_S) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"MQTT URL {url!r} must look like mqtt://[user:pass@]host[:1883] or mqtts://...")
        tls = parts.scheme == "mqtts"
        self._where = f"{parts.scheme}://{parts.hostname}:{parts.port or (8883 if tls else 1883)}"
        self._acked: set[int] = set()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._connections = 0
        client = Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True)
        if parts.username:
            client.username_pw_set(unquote(parts.username), unquote(parts.password or ""))
        if tls:
            ca_file = parse_qs(parts.query).get("ca_certs", [None])[0]
            client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        client.reconnect_delay_set(min_delay=RECONNECT_MIN_S, max_delay=reconnect_max_s)  # type: ignore[arg-type]
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        client.connect_async(parts.hostname, parts.port or (8883 if tls else 1883), keepalive=KEEPALIVE_S)
        self._client = client

    def start(self) -> None:
        self._client.loop_start()

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def connections(self) -> int:
        """Connections made so far: a change means the broker was lost and found again."""
        with self._lock:
            return self._connections

    def publish(self, topic: str, payload: str) -> int:
        """Queue `payload` on `topic` with QoS 1; returns its message id, acknowledged later (`take_acked`)."""
        return self._client.publish(topic, payload, qos=1).mid

    def take_acked(self) -> set[int]:
        """Message ids the broker acknowledged since the last call."""
        with self._lock:
            acked, self._acked = self._acked, set()
        return acked

    def _on_connect(self, client: Client, userdata: object, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None) -> None:
        if reason.is_failure:
            logger.warning("MQTT broker %s refused the connection: %s", self._where, reason)
            return
        with self._lock:
            self._connections += 1
        self._connected.set()
        logger.info("connected to the MQTT broker %s", self._where)

    def _on_disconnect(
        self, client: Client, userdata: object, flags: DisconnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        if self._connected.is_set():
            logger.warning("lost the MQTT broker %s (%s); reconnecting, messages wait in the outbox", self._where, reason)
        self._connected.clear()

    def _on_publish(self, client: Client, userdata: object, mid: int, reason: ReasonCode, properties: Properties | None) -> None:
        with self._lock:
            self._acked.add(mid)
