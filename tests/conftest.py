"""Shared fixtures: a copy of the example config in a temp dir, an App on a real SQLite file, CAP builders."""

from __future__ import annotations

import asyncio
import shutil
import uuid
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import postgres
from tests.support.cap import cap_cn as cap_cn  # the tests' CAP-CN builder, imported from here
from tests.support.gateway import FakeSmsGateway
from warnd.app import App
from warnd.clock import FakeClock
from warnd.config import Config, load_config
from warnd.store import Store

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
CORPUS = ROOT.parent / "shared" / "corpus"
# The CAP-CN fixtures describe 2024-07-12 05:30 (+08:00); tests run on a clock set just after that.
FIXTURE_TIME = datetime(2024, 7, 11, 21, 31, tzinfo=UTC)
# every config copy has this API token (an admin's): the API needs credentials on every route but /healthz
TEST_TOKEN = "wd_tests-admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}
# a second person: red / orange / whole-public broadcasts need an approval by someone other than the submitter
APPROVER_TOKEN = "wd_tests-approver-token-0123456789abcdef"
APPROVER_AUTH = {"Authorization": f"Bearer {APPROVER_TOKEN}"}


# The example has no app-push subscriptions; tests of push rendering and fan-out give these four subscribers a
# token each (as the example once did) and send `push` through the file adapter: @pytest.mark.file_push.
PUSH_SUBSCRIBERS = {
    "王大山": "test-push-wangdashan",
    "黄丽": "test-push-huangli",
    "罗文军": "test-push-luowenjun",
    "唐建华": "test-push-tangjianhua",
}


E2E = ROOT / "tests" / "e2e"


@pytest.hookimpl(trylast=True)  # after pytest-xdist's own, which gives a grouped test's id its "@group"
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On pytest-xdist's workers (addopts: ``-n``), the slow end-to-end tests first and the quick unit tests last,
    so that the run does not end with one worker busy on a long test while the others wait. One process
    (``-n 0``) keeps testpaths' fast-first order."""
    if not hasattr(config, "workerinput"):
        return
    slow_first = {"e2e": 0, "integration": 1, "unit": 2}
    items.sort(key=lambda item: slow_first.get(item.path.parent.name, 1))
    grouped = [
        (item, mark.args[0] if mark.args else mark.kwargs.get("name", "default"))
        for item in items
        if (mark := item.get_closest_marker("xdist_group"))
    ]
    if config.getvalue("loadgroup") and any(not item.nodeid.endswith(f"@{name}") for item, name in grouped):
        warnings.warn(  # pytest ≥ 9.2 with pytest-xdist 3.8: pytest-dev/pytest-xdist#1386 (pyproject pins pytest)
            pytest.PytestConfigWarning(
                "pytest-xdist ignores the xdist_group marks with this pytest: module-scoped fixtures (browsers, "
                "daemons) are set up on every worker, and the run takes minutes longer"
            ),
            stacklevel=1,
        )


@pytest.fixture(scope="session")
def migrated_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty SQLite database at the newest schema, migrated once per test session (per xdist worker)."""
    path = tmp_path_factory.mktemp("migrated") / "warnd.db"

    async def migrate() -> None:
        store = Store.open(f"sqlite+aiosqlite:///{path}")
        try:
            await store.upgrade()
        finally:
            await store.close()

    asyncio.run(migrate())  # a sync session fixture: set up outside any test's event loop
    return path


@pytest.fixture
def config_dir(tmp_path: Path, request: pytest.FixtureRequest, migrated_database: Path) -> Path:
    """A writable copy of config/ whose data_dir and templates point into the temp dir / the project.

    Outside tests/e2e its data_dir starts with a copy of ``migrated_database``: an App started on it finds the
    schema current instead of running every migration again (~0.3 s a test). tests/integration/test_migrations.py
    tests the migrations, and the e2e tests' `warnd` processes start from an empty data_dir, as a new
    installation does.

    Markers change the copy: ``file_push`` (push through the file adapter, PUSH_SUBSCRIBERS with a token) and
    ``file_loudspeaker`` (loudspeakers through the file adapter instead of the local MQTT broker).

    With ``WARND_TEST_POSTGRES=1`` (tests/support/postgres.py) the copy's database is a fresh PostgreSQL database
    (dropped at teardown) instead of the SQLite file in data_dir, except in tests/e2e, which read that file."""
    target = make_config_copy(tmp_path)
    if postgres.postgres_wanted() and "e2e" not in request.node.path.parts:
        url = postgres.create_database()
        request.addfinalizer(lambda: postgres.drop_database(url))
        edit_yaml(target / "warnd.yaml", use_postgres(url))
    elif not request.node.path.is_relative_to(E2E):
        (tmp_path / "data").mkdir(exist_ok=True)
        shutil.copyfile(migrated_database, tmp_path / "data" / "warnd.db")
    if request.node.get_closest_marker("file_push"):
        file_push(target)
    if request.node.get_closest_marker("file_loudspeaker"):
        file_loudspeaker(target)
    return target


def use_postgres(url: str) -> Callable[[dict[str, Any]], None]:
    """A warnd.yaml change: the database at ``url``, and the shared link secret every node of a cluster must
    be configured with (warnd/links.py)."""

    def change(settings: dict[str, Any]) -> None:
        settings["database"] = url
        settings.setdefault("feedback", {})["link_secret"] = "tests-cluster-link-secret-0123456789abcdef"

    return change


def make_config_copy(root: Path) -> Path:
    """config/ copied to ``root/config``, data in ``root/data``, MQTT client id and topics of its own."""
    target = root / "config"
    shutil.copytree(ROOT / "config", target)
    settings = yaml.safe_load((target / "warnd.yaml").read_text(encoding="utf-8"))
    settings["data_dir"] = str(root / "data")
    # a copy: the console saves templates (PUT /api/v1/templates/…), which must never touch the project's own
    shutil.copytree(ROOT / "templates", root / "templates", dirs_exist_ok=True)
    settings["templates"] = str(root / "templates")
    api = settings.setdefault("api", {})
    api["tokens"] = [
        *api.get("tokens", []),
        {"name": "tests", "token": TEST_TOKEN},
        {"name": "tests-approver", "token": APPROVER_TOKEN, "role": "approver"},
    ]
    (target / "warnd.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True), encoding="utf-8")
    own_mqtt_session(target)
    return target


def own_mqtt_session(config_dir: Path) -> None:
    """The example's loudspeakers publish to the local MQTT broker: give every mqtt_loudspeaker channel of this
    copy its own client id (its own persistent session) and topic prefix, so tests never take over each other's
    session or hear each other's commands."""
    run = uuid.uuid4().hex[:12]

    def change(data: dict[str, Any]) -> None:
        for name, channel in data["channels"].items():
            if channel.get("adapter") == "mqtt_loudspeaker":
                channel["client_id"] = f"warnd-test-{run}-{name}"
                channel["topic_prefix"] = f"warnd-test/{run}/{name}"

    edit_yaml(config_dir / "channels.yaml", change)


def file_push(config_dir: Path, tokens: dict[str, str] = PUSH_SUBSCRIBERS) -> None:
    """`push` through the file adapter (address: push), and a push token for each subscriber in ``tokens``."""

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["push"] = {"adapter": "file", "address": "push", "template": "push"}

    def subscribers(data: dict[str, Any]) -> None:
        for person in data["subscribers"]:
            if person["name"] in tokens:
                person["push_tokens"] = [tokens[person["name"]]]

    edit_yaml(config_dir / "channels.yaml", channels)
    edit_yaml(config_dir / "subscribers.yaml", subscribers)


def file_loudspeaker(config_dir: Path) -> None:
    """`loudspeaker` through the file adapter (address: terminal, data/outbox/loudspeaker.jsonl)."""

    def channels(data: dict[str, Any]) -> None:
        data["channels"]["loudspeaker"] = {
            "adapter": "file",
            "address": "terminal",
            "template": "loudspeaker",
            "max_chars": 500,
        }

    edit_yaml(config_dir / "channels.yaml", channels)


def edit_yaml(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(data)
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")


@pytest.fixture
def config(config_dir: Path) -> Config:
    return load_config(config_dir)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(FIXTURE_TIME)


@pytest.fixture
async def app(config: Config, clock: FakeClock) -> AsyncIterator[App]:
    application = App(config, clock=clock)
    await application.start(channels=True)
    yield application
    await application.close()


@pytest.fixture
async def gateway() -> AsyncIterator[FakeSmsGateway]:
    """The fake SMS gateway (tests/support/gateway.py), a real aiohttp server on a free port."""
    async with FakeSmsGateway() as gw:
        yield gw


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database on the local server, dropped afterwards."""
    url = postgres.create_database()
    try:
        yield url
    finally:
        postgres.drop_database(url)
