"""The application object: every long-lived part, wired once. No global state lives outside it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from channels import adapter_class
from channels.base import Channel
from warnd.acks import Acknowledgements
from warnd.audio import Speech
from warnd.auth import Accounts
from warnd.board import LiveBoard
from warnd.broadcasts import Broadcasts
from warnd.clock import Clock, SystemClock
from warnd.config import Config, Subscriber, Terminal
from warnd.dispatch import Dispatcher
from warnd.escalation import Escalator
from warnd.hydro.service import HydroService
from warnd.links import LinkSigner
from warnd.pipeline import Pipeline
from warnd.receipts import ADAPTER_KINDS
from warnd.render import Renderer
from warnd.report import Reporter
from warnd.store import Claimed, Store
from warnd.store.cluster import open_cluster

log = logging.getLogger("warnd")


def recipient_row(person: Subscriber | Terminal) -> dict[str, Any]:
    """The recipients-table row for a configured or imported subscriber / terminal."""
    if isinstance(person, Terminal):
        return {
            "key": f"terminal:{person.id}",
            "kind": "terminal",
            "name": person.name,
            "phone": None,
            "role": person.role,
            "area_code": person.area_code,
            "lat": person.lat,
            "lon": person.lon,
            "language": person.language,
            "push_tokens": None,
            "terminal_id": person.id,
            "address": None,
            "household": None,
            "vulnerable": None,
            "superior": None,
            "groups": "|".join(person.groups),
        }
    return {
        "key": person.phone or f"{person.area_code}:{person.name}",
        "kind": "person",
        "name": person.name,
        "phone": person.phone,
        "role": person.role,
        "area_code": person.area_code,
        "lat": person.lat,
        "lon": person.lon,
        "language": person.language,
        "push_tokens": list(person.push_tokens) or None,
        "terminal_id": None,
        "address": person.address,
        "household": person.household,
        "vulnerable": list(person.vulnerable) or None,
        "superior": person.superior,
        "groups": "|".join(person.groups),
    }


class StoreFeedback:
    """The channels' :class:`channels.base.FeedbackSink`: reports become delivery events in the store and move
    the delivery's status (sent → delivered | failed, :mod:`warnd.receipts`)."""

    def __init__(self, store: Store, clock: Clock, kinds: Mapping[str, str] | None = None):
        self.store = store
        self.clock = clock
        self.kinds = dict(kinds or {})  # channel name → report kind (sms, push, loudspeaker)
        # where inbound SMS go (App: the 叫应 keywords, warnd.acks.Acknowledgements.from_reply)
        self.on_reply: Callable[[str, str, datetime, Mapping[str, Any]], Awaitable[object]] | None = None

    async def record(self, channel: str, msg_id: str, state: str, detail: Mapping[str, Any]) -> None:
        part = detail.get("message_id")  # the provider's id of the part reported on (SMPP receipts)
        result = await self.store.record_feedback(
            channel,
            msg_id,
            state,
            detail,
            self.clock.now(),
            kind=self.kinds.get(channel, ""),
            provider_id=str(part) if part else None,
        )
        if result.delivery_id is None:
            log.warning(
                "channel %s: %s report for unknown msg_id %r (kept in the audit log)", channel, state, msg_id
            )

    async def reply(self, channel: str, phone: str, text: str, detail: Mapping[str, Any]) -> None:
        if self.on_reply is not None:
            await self.on_reply(phone, text, self.clock.now(), {"channel": channel, **detail})


class App:
    def __init__(self, config: Config, *, clock: Clock | None = None, database: str | None = None):
        self.config = config
        self.tz = ZoneInfo(config.timezone)  # how times are shown to people (API, CLI)
        self.clock: Clock = clock or SystemClock()
        self.started_at = self.clock.now()  # feeds never polled since are stale only after their stale_after
        config.data_dir.mkdir(parents=True, exist_ok=True)  # on PostgreSQL no SQLite file creates it
        self.store = Store.open(database or config.database_url)
        # what the nodes of a cluster agree on through the database (PostgreSQL; nothing on SQLite)
        self.cluster = open_cluster(self.store, self.clock)
        self.renderer = Renderer(config.templates, default_language=config.language, timezone=config.timezone)
        self.channels: dict[str, Channel] = {
            name: adapter_class(settings["adapter"])(
                name, config.channel_settings(name), data_dir=str(config.data_dir)
            )
            for name, settings in config.channels.items()
        }
        self.speech = Speech(config.audio, config.data_dir / "audio")
        self.links = LinkSigner.from_settings(
            config.feedback.link_secret, config.data_dir, shared_database=not self.store.is_sqlite
        )
        self.feedback = StoreFeedback(
            self.store,
            self.clock,
            {name: ADAPTER_KINDS.get(c["adapter"], "") for name, c in config.channels.items()},
        )
        for channel in self.channels.values():
            channel.feedback = self.feedback
        self.dispatcher = Dispatcher(
            store=self.store, channels=self.channels, settings=config.dispatch, clock=self.clock
        )
        self.pipeline = Pipeline(
            config=config,
            store=self.store,
            renderer=self.renderer,
            clock=self.clock,
            wake=self.wake,
            speech=self.speech,
            links=self.links,
            cluster=self.cluster,
        )
        self.dispatcher.failover = self._fail_over  # alternates when a channel or terminal is down
        self.hydro = HydroService(config=config, store=self.store, pipeline=self.pipeline, clock=self.clock)
        # the feedback loop: 叫应, the escalation ladder and door-knock lists, coverage reports
        self.acks = Acknowledgements(config=config, store=self.store, clock=self.clock, links=self.links)
        self.escalator = Escalator(
            config=config, store=self.store, pipeline=self.pipeline, clock=self.clock, links=self.links
        )
        self.reporter = Reporter(config=config, store=self.store, clock=self.clock)
        self.board = LiveBoard(config=config, store=self.store, clock=self.clock, escalator=self.escalator)
        self.feedback.on_reply = self.acks.from_reply
        self.accounts = Accounts(self.store, self.clock, config.api.tokens)  # people and machines (issue 6)
        # the composer's drafts and their two-person approval
        self.broadcasts = Broadcasts(
            config=config, store=self.store, pipeline=self.pipeline, clock=self.clock, channels=self.channels
        )

    async def start(self, *, migrate: bool = True, sync: bool = True, channels: bool = False) -> None:
        if migrate:
            await self.store.upgrade()
        if sync:
            await self.sync_config()
        if channels:
            for channel in self.channels.values():
                await channel.start()

    def wake(self) -> None:
        """New deliveries are due: wake this node's dispatcher and (cluster mode) the other nodes'."""
        self.dispatcher.wake()
        self.cluster.wake_others()

    async def _fail_over(
        self, item: Claimed, why: str, *, available: Callable[[str], bool], channels: Collection[str]
    ) -> Any:
        """The pipeline's failover; alternates it wrote are news for the other nodes' dispatchers too."""
        done = await self.pipeline.fail_over(item, why, available=available, channels=channels)
        if done is not None:
            self.cluster.wake_others()
        return done

    async def close(self) -> None:
        # every channel, started here or not: the dispatcher starts a channel at its first send when needed
        for channel in self.channels.values():
            await channel.close()
        await self.cluster.close()
        await self.store.close()

    async def sync_config(self) -> dict[str, int]:
        """Make the recipients table match the subscribers and terminals in config (imported ones stay)."""
        people: list[Subscriber | Terminal] = [*self.config.subscribers, *self.config.terminals]
        return await self.store.upsert_recipients(
            [[recipient_row(p) for p in people]], source="config", now=self.clock.now(), replace_source=True
        )
