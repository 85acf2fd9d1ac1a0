"""The webhook sink: POSTs each outbox message's JSON, signed, to one HTTP(S) address.

The body is the message as wire.verdicts encodes it; header ``X-Lineguard-Signature`` carries
``sha256=`` and the hex HMAC-SHA256 of the body with the shared secret, so the receiver can check the
sender (compare with `hmac.compare_digest`). Any answer but a 2xx (or no answer) is retried by the
relay with backoff; messages go one at a time, in order.
"""

from __future__ import annotations

import hashlib
import hmac
import urllib.error
import urllib.request

from wire.verdicts import WEBHOOK_SIGNATURE_HEADER

#: Seconds a POST may take before it counts as failed.
POST_TIMEOUT_S = 10


class WebhookError(Exception):
    """The webhook did not take a message (refused, failed or unreachable)."""


def signature(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, url: str, secret: str) -> None:
        self._url = url
        self._secret = secret

    def post(self, payload: str) -> None:
        """Send one message; WebhookError unless the receiver answered 2xx."""
        body = payload.encode()
        request = urllib.request.Request(
            self._url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", WEBHOOK_SIGNATURE_HEADER: signature(self._secret, body)},
        )
        try:
            with urllib.request.urlopen(request, timeout=POST_TIMEOUT_S) as response:  # noqa: S310 - http(s) checked in settings
                response.read()
        except urllib.error.HTTPError as error:
            raise WebhookError(f"{self._url} answered {error.code} {error.reason}") from None
        except (urllib.error.URLError, OSError) as error:
            raise WebhookError(f"{self._url} is unreachable: {error}") from None
