"""The bundled Redis's bootstrap scripts, as the chart renders them, on real redis-server
and redis-sentinel processes.

Each "pod" is two processes (the redis and sentinel containers' commands) with the
environment the StatefulSet gives them. Pods get their own loopback address (127.0.0.x)
in place of a stable DNS name, so all of them use the same ports, as in the cluster.
"""

from __future__ import annotations

import contextlib
import gc
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
from chart import find, helm_binary, render
from stalk_broker.endpoint import BrokerEndpoint, connect
from stalk_devenv.process import ManagedProcess, wait_until
from stalk_devenv.redis import ServerTLS, redis_available
from workers import client_app, unacknowledged_task_ids

PASSWORD = 's3cret "quoted" \\back $pace'  # what a Secret of your own may hold
DOWN_AFTER_MS = 1000
ADD = "stalk_worker.tasks.canvas.add"

pytestmark = pytest.mark.skipif(
    not redis_available(), reason="redis-server/redis-sentinel are not installed"
)


@dataclass
class RenderedRedis:
    """What the chart renders for one Redis pod: scripts and each container's env."""

    scripts: dict[str, str]
    env: dict[str, dict[str, str]]
    """Literal env values per container (redis, sentinel)."""


def render_redis(*values: str) -> RenderedRedis:
    docs = render(helm_binary(), *values)
    scripts = find(docs, "ConfigMap", "-redis-scripts")["data"]
    pod = find(docs, "StatefulSet", "-redis")["spec"]["template"]["spec"]
    env = {
        c["name"]: {e["name"]: e["value"] for e in c["env"] if "value" in e}
        for c in pod["containers"]
    }
    return RenderedRedis(scripts=scripts, env=env)


@pytest.fixture(scope="module")
def rendered() -> RenderedRedis:
    """Quick failure detection, to keep the tests short."""
    return render_redis(
        "--set",
        f"redis.sentinel.downAfterMilliseconds={DOWN_AFTER_MS}",
        "--set",
        "redis.sentinel.failoverTimeoutMilliseconds=3000",
    )


def _ports_free_on(hosts: list[str]) -> tuple[int, int]:
    """A port pair free on every loopback address (nodes share ports, as in pods)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            base = probe.getsockname()[1]
        ports = (base, base + 1)
        try:
            for host in hosts:
                for port in ports:
                    with socket.socket() as s:
                        s.bind((host, port))
        except OSError:
            continue
        return ports
    raise RuntimeError("no free port pair")


@dataclass
class Node:
    """One Redis pod: its address and its two container processes."""

    host: str
    redis: ManagedProcess
    sentinel: ManagedProcess
    hook_env: dict[str, str] = field(default_factory=dict)
    """What the redis container's preStop hook sees."""
    tls: ServerTLS | None = None

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            self.host,
            port,
            password=PASSWORD,
            socket_timeout=2,
            decode_responses=True,
            **(self.tls.client_kwargs() if self.tls else {}),
        )


@dataclass
class RedisGroup:
    """The StatefulSet: nodes, ports, and helpers to ask them about roles."""

    nodes: list[Node]
    redis_port: int
    sentinel_port: int
    data_dirs: list[Path] = field(default_factory=list)
    scripts: Path = Path()
    tls: ServerTLS | None = None

    def redis(self, node: Node) -> redis.Redis:
        return node.client(self.redis_port)

    def sentinel(self, node: Node) -> redis.Redis:
        return node.client(self.sentinel_port)

    def role(self, node: Node) -> dict:
        return self.redis(node).info("replication")

    def masters(self) -> list[str]:
        found = []
        for node in self.nodes:
            try:
                if self.role(node)["role"] == "master":
                    found.append(node.host)
            except redis.RedisError:
                continue
        return found

    def sentinel_view(self) -> set[str]:
        """Masters the live Sentinels name (by their announced host)."""
        views = set()
        for node in self.nodes:
            try:
                host, _ = self.sentinel(node).sentinel_get_master_addr_by_name("mymaster")
                views.add(host)
            except (redis.RedisError, TypeError):
                continue
        return views

    def healthy(self, master: str | None = None) -> bool:
        """One master, every other node its replica with a live link, all Sentinels
        agreeing on it and knowing each other and both replicas."""
        masters = self.masters()
        if len(masters) != 1 or (master is not None and masters != [master]):
            return False
        for node in self.nodes:
            info = self.role(node)
            if node.host != masters[0] and (
                info.get("master_host") != masters[0] or info.get("master_link_status") != "up"
            ):
                return False
            state = self.sentinel(node).sentinel_master("mymaster")
            if state["num-other-sentinels"] != len(self.nodes) - 1:
                return False
            if state["num-slaves"] != len(self.nodes) - 1:
                return False
        return self.sentinel_view() == set(masters)

    def switched_from(self, old: Node) -> bool:
        """Every live Sentinel names one master, and it is not ``old``."""
        views = self.sentinel_view()
        return len(views) == 1 and views != {old.host}

    def sentinel_url(self) -> str:
        """How a client finds the group: the chart's sentinel:// URL form."""
        return ";".join(f"sentinel://{n.host}:{self.sentinel_port}/0" for n in self.nodes)

    def endpoint(self) -> BrokerEndpoint:
        return BrokerEndpoint.from_url(
            self.sentinel_url(),
            master_name="mymaster",
            password=PASSWORD,
            sentinel_password=PASSWORD,
            tls=self.tls is not None,
            ca_file=str(self.tls.ca) if self.tls else None,
        )

    def celery_env(self, scratch: Path) -> dict[str, str]:
        """The STALK_* settings the chart gives every Celery process of this group."""
        return {
            "STALK_BROKER_URL": self.sentinel_url(),
            "STALK_SENTINEL_MASTER": "mymaster",
            "STALK_REDIS_PASSWORD": PASSWORD,
            "STALK_SENTINEL_PASSWORD": PASSWORD,
            "STALK_SCRATCH_DIR": str(scratch),
            **(
                {"STALK_REDIS_TLS": "true", "STALK_REDIS_CA_FILE": str(self.tls.ca)}
                if self.tls
                else {}
            ),
        }


@pytest.fixture
def redis_group(rendered: RenderedRedis, tmp_path: Path) -> Iterator[RedisGroup]:
    with run_group(rendered, tmp_path) as group:
        yield group


@contextmanager
def run_group(rendered: RenderedRedis, tmp_path: Path, tls: bool = False) -> Iterator[RedisGroup]:
    """Three pods of the rendered StatefulSet (started by the test), killed at the end;
    with ``tls``, the certificate Secret's files in a directory of their own."""
    hosts = [f"127.0.0.{10 + i}" for i in range(3)]
    server_tls = ServerTLS.issue(tmp_path / "pki", [*hosts, "127.0.0.1"]) if tls else None
    redis_port, sentinel_port = _ports_free_on(hosts)
    scripts = tmp_path / "scripts"
    scripts.mkdir(parents=True)
    for name, text in rendered.scripts.items():
        (scripts / name).write_text(text)
    nodes = []
    data_dirs = []
    for i, host in enumerate(hosts):
        conf, data = tmp_path / f"conf-{i}", tmp_path / f"data-{i}"
        conf.mkdir()
        data.mkdir()
        data_dirs.append(data)
        overrides = {
            "MY_HOST": host,
            "REDIS_NODES": " ".join(hosts),
            "REDIS_PASSWORD": PASSWORD,
            "REDIS_PORT": str(redis_port),
            "SENTINEL_PORT": str(sentinel_port),
            "REDIS_BIND": host,
            "SENTINEL_BIND": host,
            "CONF_DIR": str(conf),
            "DATA_DIR": str(data),
            "PATH": "/usr/bin:/bin",
        }
        if server_tls is not None:
            overrides["TLS_DIR"] = str(secret_volume(server_tls, tmp_path / "tls"))
        processes = {
            container: ManagedProcess(
                f"{container}-{i}",
                ["sh", str(scripts / f"{container}-start.sh")],
                tmp_path / "logs",
                env={**rendered.env[container], **overrides},
            )
            for container in ("redis", "sentinel")
        }
        hook_env = {**rendered.env["redis"], **overrides, "LOCAL_HOST": host}
        nodes.append(Node(host, processes["redis"], processes["sentinel"], hook_env, server_tls))
    group = RedisGroup(nodes, redis_port, sentinel_port, data_dirs, tls=server_tls)
    group.scripts = scripts
    try:
        yield group
    finally:
        # Celery results dropped by the test unsubscribe while Redis still runs; after,
        # Celery's result backend would retry them forever.
        gc.collect()
        for node in nodes:
            node.redis.kill()
            node.sentinel.kill()


def secret_volume(tls: ServerTLS, directory: Path) -> Path:
    """The certificate Secret as its volume shows it: tls.crt, tls.key and ca.crt."""
    directory.mkdir(exist_ok=True)
    for name, source in (
        ("tls.crt", tls.server.cert),
        ("tls.key", tls.server.key),
        ("ca.crt", tls.ca),
    ):
        (directory / name).write_bytes(source.read_bytes())
    return directory


def start_all_at_once(group: RedisGroup) -> None:
    for node in group.nodes:
        node.redis.start()
        node.sentinel.start()


def logs(group: RedisGroup) -> str:
    return "\n".join(
        f"--- {p.name}\n{p.log_tail(15)}" for n in group.nodes for p in (n.redis, n.sentinel)
    )


def test_rendered_env_names_what_the_scripts_read(rendered):
    """The StatefulSet passes the Sentinel settings from values to the sentinel script."""
    sentinel = rendered.env["sentinel"]
    assert sentinel["DOWN_AFTER_MS"] == str(DOWN_AFTER_MS)
    assert sentinel["QUORUM"] == "2"
    assert rendered.env["redis"]["MASTER_NAME"] == "mymaster"
    assert len(rendered.env["redis"]["REDIS_NODES"].split()) == 3
    assert "requirepass" in rendered.scripts["sentinel-start.sh"]


def test_three_nodes_starting_at_once_elect_exactly_one_master(redis_group):
    start_all_at_once(redis_group)
    try:
        wait_until(redis_group.healthy, 30, "one master, two replicas, agreeing Sentinels")
    except TimeoutError:
        pytest.fail(f"group never settled: masters={redis_group.masters()}\n{logs(redis_group)}")
    assert redis_group.masters() == [redis_group.nodes[0].host]
    # Auth is on for both: without the password nothing answers.
    first = redis_group.nodes[0]
    for port in (redis_group.redis_port, redis_group.sentinel_port):
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(first.host, port, socket_timeout=2).ping()
    # A client that goes through the Sentinels finds the master and can write.
    with connect(redis_group.endpoint()) as client:
        assert client.set("k", "v")


def test_master_killed_replica_promoted_and_old_master_rejoins(redis_group):
    start_all_at_once(redis_group)
    wait_until(redis_group.healthy, 30, "the group to settle")
    old = redis_group.nodes[0]
    redis_group.redis(old).set("survives", "failover")
    redis_group.redis(old).wait(2, 2000)

    killed_at = time.monotonic()
    old.redis.kill()

    try:
        wait_until(lambda: redis_group.switched_from(old), 30, "the Sentinels to switch master")
    except TimeoutError:
        pytest.fail(f"no promotion:\n{logs(redis_group)}")
    print(f"\nfailover: master killed -> Sentinels switched in {time.monotonic() - killed_at:.1f}s")
    # One master, the one the Sentinels name now: on a loaded machine a 1 s down-after
    # can see the new master slow to answer and fail over once more, which is correct.
    wait_until(
        lambda: [*redis_group.sentinel_view()] == redis_group.masters(),
        15,
        "the replica to be promoted",
    )
    (new_master,) = redis_group.sentinel_view()
    new = next(n for n in redis_group.nodes if n.host == new_master)
    assert redis_group.redis(new).get("survives") == "failover"

    # The old master's container restarts: it must come back as a replica of the new one.
    old.redis.start()
    try:
        wait_until(lambda: redis_group.healthy(new_master), 30, "the old master to rejoin")
    except TimeoutError:
        pytest.fail(f"old master did not rejoin as a replica:\n{logs(redis_group)}")
    assert redis_group.role(old)["role"] == "slave"
    assert "starting as replica of " + new_master in old.redis.log_path.read_text()


def run_prestop(group: RedisGroup, node: Node) -> subprocess.CompletedProcess[str]:
    script = str(group.scripts / "redis-prestop.sh")
    return subprocess.run(
        ["sh", script], env=node.hook_env, capture_output=True, text=True, timeout=60
    )


def test_a_stopping_master_hands_over_before_it_stops(redis_group):
    """The redis container's preStop: a deleted master pod promotes a replica at once,
    rather than after the Sentinels' down-after-milliseconds, and no write a client saw
    acknowledged is lost on the way."""
    start_all_at_once(redis_group)
    wait_until(redis_group.healthy, 30, "the group to settle")
    old = redis_group.nodes[0]
    acknowledged: list[str] = []
    stop = threading.Event()

    def write() -> None:
        """An application through the Sentinels, retrying what fails."""
        with connect(redis_group.endpoint()) as client:
            for n in range(100_000):
                if stop.is_set():
                    return
                while not stop.is_set():
                    try:
                        client.rpush("writes", f"w{n}")
                        acknowledged.append(f"w{n}")
                        break
                    except redis.RedisError:
                        time.sleep(0.05)
                time.sleep(0.005)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    time.sleep(1)
    started = time.monotonic()
    hook = run_prestop(redis_group, old)
    took = time.monotonic() - started
    time.sleep(1)
    stop.set()
    writer.join(10)
    print(f"\nhandover: preStop returned in {took:.1f}s ({hook.stderr.strip()})")
    assert hook.returncode == 0 and "handed over" in hook.stderr, hook.stderr
    assert redis_group.role(old)["role"] == "slave"
    wait_until(lambda: len(redis_group.sentinel_view()) == 1, 10, "the Sentinels to agree")
    (new_master,) = redis_group.sentinel_view()
    assert new_master != old.host and redis_group.masters() == [new_master]
    assert took < DOWN_AFTER_MS / 1000 + 1, "about as fast as the Sentinels' own timeout"
    new = next(n for n in redis_group.nodes if n.host == new_master)
    kept = set(redis_group.redis(new).lrange("writes", 0, -1))
    missing = [w for w in acknowledged if w not in kept]
    assert len(acknowledged) > 100 and missing == [], f"{len(missing)} acknowledged writes lost"

    # A replica's hook does nothing.
    replica = next(n for n in redis_group.nodes if n.host != new_master)
    quiet = run_prestop(redis_group, replica)
    assert (quiet.returncode, quiet.stderr) == (0, "")
    assert redis_group.sentinel_view() == {new_master}


def test_sentinels_restarting_alone_follow_the_running_master(redis_group):
    """After a failover, Sentinels that all restart must not fall back to node 0."""
    start_all_at_once(redis_group)
    wait_until(redis_group.healthy, 30, "the group to settle")
    # A Sentinel refuses (NOGOODSLAVE) until its view of the replicas is fresh enough:
    # ask until it accepts.
    wait_until(
        lambda: redis_group.sentinel(redis_group.nodes[0]).execute_command(
            "SENTINEL FAILOVER", "mymaster"
        ),
        30,
        "a Sentinel to accept the manual failover",
        interval=1,
    )
    wait_until(
        lambda: redis_group.masters() not in ([], [redis_group.nodes[0].host]),
        30,
        "the manual failover",
    )
    wait_until(redis_group.healthy, 30, "the group to settle after failover")
    master = redis_group.masters()[0]
    for node in redis_group.nodes:
        node.sentinel.kill()
    for node in redis_group.nodes:
        node.sentinel.start()
    wait_until(lambda: redis_group.healthy(master), 30, "Sentinels to find the running master")


def test_whole_group_restarts_without_split_brain_and_keeps_its_data(redis_group):
    start_all_at_once(redis_group)
    wait_until(redis_group.healthy, 30, "the group to settle")
    master = redis_group.redis(redis_group.nodes[0])
    master.set("durable", "yes")
    master.wait(2, 2000)
    for node in redis_group.nodes:
        node.redis.kill()
        node.sentinel.kill()
    start_all_at_once(redis_group)
    try:
        wait_until(redis_group.healthy, 30, "one master after a full restart")
    except TimeoutError:
        pytest.fail(f"after a full restart: masters={redis_group.masters()}\n{logs(redis_group)}")
    with connect(redis_group.endpoint()) as client:
        assert client.get("durable") == b"yes"


def test_celery_through_the_sentinels_survives_a_failover(redis_group, workers, tmp_path):
    """A worker and a client set up as the chart sets them up (Sentinel URLs, master
    name, a password for Redis and for the Sentinels) keep working across a failover
    with no reconfiguration, and lose no task."""
    celery_survives_a_failover(redis_group, workers, tmp_path)


def test_tls_only_the_group_settles_fails_over_and_celery_follows(workers, tmp_path):
    """redis.tls on: the scripts bootstrap over TLS, nothing answers in plain text, and
    Celery, verifying the servers, keeps working across a failover."""
    rendered = render_redis(
        "--set", f"redis.sentinel.downAfterMilliseconds={DOWN_AFTER_MS}",
        "--set", "redis.sentinel.failoverTimeoutMilliseconds=3000",
        "--set", "redis.tls.enabled=true",
        "--set", "redis.tls.existingSecret=redis-certs",
    )  # fmt: skip
    assert rendered.env["redis"]["TLS_DIR"] == rendered.env["sentinel"]["TLS_DIR"] == "/tls"
    with run_group(rendered, tmp_path, tls=True) as group:
        celery_survives_a_failover(group, workers, tmp_path)
        (master,) = group.masters()  # answering over TLS, not in plain text
        for port in (group.redis_port, group.sentinel_port):
            with pytest.raises(redis.ConnectionError):
                redis.Redis(master, port, password=PASSWORD, socket_timeout=2).ping()


def celery_survives_a_failover(redis_group: RedisGroup, workers, tmp_path: Path) -> None:
    start_all_at_once(redis_group)
    wait_until(redis_group.healthy, 30, "the group to settle")
    env = redis_group.celery_env(tmp_path / "scratch")
    workers.start(env, queues=("default",), concurrency=2)
    with client_app(env) as app:
        before = [app.send_task(ADD, args=(i, i)) for i in range(5)]
        assert [r.get(timeout=30) for r in before] == [2 * i for i in range(5)]

        old = next(n for n in redis_group.nodes if n.host == redis_group.masters()[0])
        old.redis.kill()
        wait_until(lambda: redis_group.switched_from(old), 30, "the Sentinels to switch master")
        wait_until(
            lambda: redis_group.masters() == sorted(redis_group.sentinel_view()),
            30,
            "the promoted replica to be the one master the Sentinels name",
        )
        # The first publish after the switch may meet the dead connection; kombu's retry
        # asks the Sentinels again and publishes to the new master.
        retry = {"max_retries": 20, "interval_start": 0.2, "interval_step": 0.2}
        after = [
            app.send_task(ADD, args=(i, 100), retry=True, retry_policy=retry) for i in range(5)
        ]
        assert [r.get(timeout=60) for r in after] == [i + 100 for i in range(5)]


def test_failover_under_load_with_the_chart_defaults(workers, tmp_path):
    """The BRIEF's fault bar, with the chart's default Sentinel settings: the master is
    SIGKILLed while tasks flow; tasks complete again within 15 s. Prints the figures.

    Redis replicates asynchronously, so a publish the master confirmed in the last
    instant before it died may never reach the replica that is promoted (measured: 0 or
    1 task in ~300, confirmed under 1 ms before the kill). The test allows a loss only
    in that window: anything confirmed earlier must be there.

    The worker is restarted when it exits, as the kubelet restarts a worker container:
    Celery's worker sometimes dies on the switch ("Unrecoverable error" from kombu while
    it closes the lost connection; seen in CI about one run in three). A task it held then
    stays in the broker's unacknowledged set until the visibility timeout hands it out
    again: late, not lost, and counted apart.
    """
    with run_group(render_redis(), tmp_path / "group") as group:
        start_all_at_once(group)
        wait_until(group.healthy, 30, "the group to settle")
        env = group.celery_env(tmp_path / "scratch")
        worker = workers.start(env, queues=("default",), concurrency=4)
        restarts = RestartOnExit(worker.process)
        with client_app(env) as app:
            # Only ids are kept: an AsyncResult left for the garbage collector after the
            # group is gone would make Celery's result backend retry it forever.
            confirmed: list[tuple[float, str]] = []
            stop = threading.Event()

            def publish() -> None:
                i = 0
                while not stop.is_set():
                    try:
                        result = app.send_task(ADD, args=(i, 0), retry=False)
                    except Exception:  # broker switching over: try the same task again
                        time.sleep(0.1)
                        continue
                    confirmed.append((time.monotonic(), result.id))
                    del result
                    i += 1
                    time.sleep(0.05)

            publisher = threading.Thread(target=publish, daemon=True)
            publisher.start()
            time.sleep(3)
            old = next(n for n in group.nodes if n.host == group.masters()[0])
            old.redis.kill()
            killed_at = time.monotonic()  # the process is gone: kill() waited for it
            time.sleep(20)
            stop.set()
            publisher.join()

            with connect(group.endpoint()) as backend:

                def missing() -> list[tuple[float, str]]:
                    keys = [f"celery-task-meta-{task_id}" for _, task_id in confirmed]
                    metas = backend.mget(keys)
                    return [
                        (sent_at - killed_at, task_id)
                        for (sent_at, task_id), meta in zip(confirmed, metas, strict=True)
                        if meta is None or json.loads(meta)["status"] != "SUCCESS"
                    ]

                with contextlib.suppress(TimeoutError):
                    wait_until(lambda: not missing(), 60, "every confirmed task to finish")
                unfinished = missing()
                held = unacknowledged_task_ids(backend)
            restarts.stop()
            lost = [t for t, task_id in unfinished if task_id not in held]
            after = [t for t, _ in confirmed if t > killed_at]
            first_after = min(after) - killed_at if after else float("inf")
            print(
                f"\nfailover under load (chart defaults): {len(confirmed)} tasks confirmed, "
                f"{len(confirmed) - len(unfinished)} completed, {len(unfinished) - len(lost)} "
                f"held for redelivery, {len(lost)} lost "
                f"(confirmed {[round(t * 1000, 1) for t in lost]} ms from the kill); "
                f"publishing resumed {first_after:.1f}s after the master was killed; "
                f"worker restarts {restarts.count}"
            )
            outside = [t for t in lost if not -0.1 < t <= 0]
            assert not outside, (
                f"{len(outside)} tasks lost outside the replication window, sent "
                f"{min(outside):.2f}..{max(outside):.2f} s from the kill; the worker's log "
                f"ends:\n{worker.log()[-6000:]}"
            )
            assert first_after <= 15, f"tasks flowed again only after {first_after:.1f}s"


class RestartOnExit:
    """Starts ``process`` again whenever it exits, as the kubelet does for a container
    with ``restartPolicy: Always``; counts the restarts."""

    def __init__(self, process: ManagedProcess) -> None:
        self.count = 0
        self._stopped = threading.Event()
        self._process = process
        threading.Thread(target=self._watch, daemon=True).start()

    def _watch(self) -> None:
        while not self._stopped.wait(0.5):
            if not self._process.running():
                self.count += 1
                self._process.start()

    def stop(self) -> None:
        self._stopped.set()
