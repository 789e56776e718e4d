"""Every registered adapter imports, is a Channel, and has its own Settings model."""

from __future__ import annotations

import pytest

import channels
from channels import REGISTRY, adapter_class
from channels.base import Channel, ChannelSettings


@pytest.mark.parametrize("adapter", sorted(REGISTRY))
def test_registry_entry(adapter: str) -> None:
    cls = adapter_class(adapter)
    assert isinstance(cls, type) and issubclass(cls, Channel)
    assert cls is not Channel
    assert issubclass(cls.Settings, ChannelSettings)
    assert cls.Settings is not ChannelSettings, f"{adapter} has no Settings model of its own"
    assert "adapter" in cls.Settings.model_fields
    assert cls.max_batch >= 1


def test_unknown_adapter_names_known_ones() -> None:
    with pytest.raises(KeyError) as info:
        adapter_class("carrier_pigeon")
    message = str(info.value)
    assert "carrier_pigeon" in message
    for known in REGISTRY:
        assert known in message


def test_registry_has_the_core_adapters() -> None:
    assert {"sms_http", "webhook", "file"} <= set(channels.REGISTRY)
