"""The broker protocol shared by operator and worker: key names, endpoints, load records."""

from __future__ import annotations

import pytest
from stalk_broker import BrokerEndpoint, KeyLayout, WorkerLoad, worker_state_key
from stalk_broker.depth import fold_queue_depths, parse_binding
from stalk_worker.routing import QUEUE_BY_MODULE, queue_for


def test_layout_names_every_priority_list():
    layout = KeyLayout(global_keyprefix="p:")
    assert layout.queue_lists("jobs") == [
        "p:jobs",
        "p:jobs\x06\x163",
        "p:jobs\x06\x166",
        "p:jobs\x06\x169",
    ]


@pytest.mark.parametrize("steps", [(), (3, 6), (0, 6, 3), (0, 0, 3)])
def test_layout_refuses_steps_kombu_would_misname(steps):
    with pytest.raises(ValueError, match="priority_steps"):
        KeyLayout(priority_steps=steps)


def test_fold_refuses_mismatched_replies():
    with pytest.raises(ValueError, match="do not match"):
        fold_queue_depths(KeyLayout(), ["a"], [1, 2])


def test_binding_member_parsing():
    sep = "\x06\x16"
    assert parse_binding(f"email{sep}{sep}email".encode(), sep) == "email"
    assert parse_binding("garbage", sep) is None


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://:pw@cache:6380/2",
            {"hosts": (("cache", 6380),), "sentinel": False, "db": 2, "password": "pw"},
        ),
        (
            "sentinel://a:26379/1;sentinel://b",
            {"hosts": (("a", 26379), ("b", 26379)), "sentinel": True, "db": 1, "password": None},
        ),
        ("rediss://cache", {"hosts": (("cache", 6379),), "sentinel": False, "db": 0, "tls": True}),
    ],
)
def test_endpoint_parsing(url, expected):
    endpoint = BrokerEndpoint.from_url(url, master_name="m" if "sentinel" in url else None)
    for name, value in expected.items():
        assert getattr(endpoint, name) == value


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("amqp://rabbit", "unsupported broker scheme"),
        ("redis://a;redis://b", "only sentinel://"),
        ("redis://a;sentinel://b", "mixed schemes"),
        ("", "empty broker URL"),
    ],
)
def test_endpoint_refuses_bad_urls(url, message):
    with pytest.raises(ValueError, match=message):
        BrokerEndpoint.from_url(url)


def test_sentinel_endpoint_needs_a_master_name():
    with pytest.raises(ValueError, match="master name"):
        BrokerEndpoint.from_url("sentinel://a:26379")


def test_endpoint_identity_ignores_passwords():
    one = BrokerEndpoint.from_url("redis://:a@h:1/0")
    two = BrokerEndpoint.from_url("redis://:b@h:1/0")
    assert one.identity == two.identity and one != two


def test_load_record_round_trip_and_garbage():
    record = WorkerLoad(active=2, reserved=1, consuming=True, updated=100.0)
    assert WorkerLoad.decode(record.encode()) == record
    assert record.in_flight == 3 and record.busy
    assert record.is_fresh(105.0) and not record.is_fresh(200.0)
    for garbage in (b"", b"{}", b'{"v": 99, "active": 1}', b"[1]", b'{"v":1,"active":"x"}'):
        assert WorkerLoad.decode(garbage) is None
    assert worker_state_key("ns/q", "p:") == "p:stalk:pool:ns/q"


def test_routing_by_module():
    assert queue_for("stalk_worker.tasks.email.send_email") == "email"
    assert queue_for("stalk_worker.tasks.webhooks.deliver_webhook") == "high_priority"
    assert queue_for("acme.billing.invoice_total") == "default"
    assert set(QUEUE_BY_MODULE.values()) == {
        "default",
        "high_priority",
        "email",
        "file_processing",
        "data_analysis",
        "reports",
        "maintenance",
    }
