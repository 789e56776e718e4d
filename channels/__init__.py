"""Channel adapters. One module per adapter, one line per adapter in REGISTRY."""

from __future__ import annotations

import importlib

from channels.base import Channel

REGISTRY: dict[str, str] = {
    "sms_http": "channels.sms_http:SmsHttpChannel",
    "smpp": "channels.smpp:SmppChannel",
    "webhook": "channels.webhook:WebhookChannel",
    "file": "channels.file:FileChannel",
    "mqtt_loudspeaker": "channels.mqtt_loudspeaker:MqttLoudspeakerChannel",
    "webpush": "channels.webpush:WebPushChannel",
    "push_http": "channels.push_http:PushHttpChannel",
}


def adapter_class(adapter: str) -> type[Channel]:
    """The Channel class registered under ``adapter``; KeyError names the known adapters."""
    try:
        target = REGISTRY[adapter]
    except KeyError:
        raise KeyError(f"unknown adapter {adapter!r} (known: {', '.join(sorted(REGISTRY))})") from None
    module, _, cls = target.partition(":")
    found: type[Channel] = getattr(importlib.import_module(module), cls)
    return found
