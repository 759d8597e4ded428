"""The oldest-wait estimate: a simulated kombu list (push on the head, pop from the tail)
polled at intervals; the true age of the tail must always lie within what is reported."""

from __future__ import annotations

from collections import deque

from hypothesis import given, settings
from hypothesis import strategies as st
from stalk_operator.scaling.waiting import ListHistory, ListView, PushTime, WaitEstimate, oldest

EPSILON = 1e-9


class Poller:
    """Feeds a history only the polls at which the list's view changed, with the time of
    the broker's previous poll, as the operator's poller does."""

    def __init__(self, broker_polled_at: float | None = None) -> None:
        self.history = ListHistory()
        self.last_view: ListView | None = None
        self.last_pushed: PushTime | None = None
        self.previous_poll = broker_polled_at
        """The broker may have been polled for other lists before this one's first poll."""

    def poll(self, view: ListView, now: float) -> WaitEstimate | None:
        if view != self.last_view:
            self.last_pushed = self.history.observe(view, now, self.previous_poll)
            self.last_view = view
        self.previous_poll = now
        return None if self.last_pushed is None else self.last_pushed.age(now)


class SimulatedList:
    """kombu's list: LPUSH on the head, BRPOP from the tail; messages are numbered."""

    def __init__(self) -> None:
        self.items: deque[tuple[int, float]] = deque()  # (identity, pushed at), head first
        self.next_identity = 1

    def push(self, at: float) -> None:
        self.items.appendleft((self.next_identity, at))
        self.next_identity += 1

    def pop(self) -> None:
        if self.items:
            self.items.pop()

    def view(self) -> ListView:
        if not self.items:
            return ListView(0)
        return ListView(len(self.items), tail=self.items[-1][0], head=self.items[0][0])

    def tail_age(self, now: float) -> float:
        return now - self.items[-1][1]


def holds(estimate: WaitEstimate, true_age: float) -> bool:
    if estimate.error is None:
        return true_age >= estimate.seconds - EPSILON
    return abs(true_age - estimate.seconds) <= estimate.error + EPSILON


events = st.lists(
    st.tuples(
        st.floats(min_value=0.01, max_value=3.0),  # time to the next event
        st.sampled_from(["push", "push", "pop", "poll"]),
        st.integers(min_value=1, max_value=8),  # how many pushes or pops
    ),
    min_size=1,
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    backlog_at_start=st.integers(min_value=0, max_value=5),
    broker_polled_before=st.booleans(),
    trace=events,
)
def test_the_true_age_of_the_oldest_message_is_always_within_the_reported_bounds(
    backlog_at_start, broker_polled_before, trace
):
    now = 100.0
    simulated, poller = SimulatedList(), Poller(now - 1 if broker_polled_before else None)
    for i in range(backlog_at_start):  # already waiting when the operator starts
        simulated.push(now - 50 + i)
    for gap, what, count in trace:
        now += gap
        if what == "push":
            for _ in range(count):
                simulated.push(now)
        elif what == "pop":
            for _ in range(count):
                simulated.pop()
        estimate = poller.poll(simulated.view(), now)
        if not simulated.items:
            assert estimate is None
            continue
        assert estimate is not None
        assert holds(estimate, simulated.tail_age(now)), (estimate, simulated.tail_age(now))


@settings(max_examples=200, deadline=None)
@given(
    gaps=st.lists(st.floats(min_value=1.0, max_value=4.0), min_size=2, max_size=60),
    service=st.integers(min_value=0, max_value=3),
)
def test_a_list_fed_no_faster_than_it_is_polled_is_known_within_one_poll_interval(gaps, service):
    """One push per poll interval at most: every message is seen as the head once."""
    simulated, poller, now, interval = SimulatedList(), Poller(), 0.0, 1.0
    poller.poll(simulated.view(), now)
    pushes = iter(gaps)
    next_push = now + next(pushes)
    for step in range(1, 300):
        now = step * interval
        while next_push <= now:
            simulated.push(next_push)
            next_push += next(pushes, 10_000.0)
        if step % 4 == 0:
            for _ in range(service):
                simulated.pop()
        estimate = poller.poll(simulated.view(), now)
        if simulated.items:
            assert estimate is not None and estimate.error is not None
            assert estimate.error <= interval / 2 + EPSILON
            assert holds(estimate, simulated.tail_age(now))


def test_a_burst_into_an_empty_list_is_known_within_one_poll_interval():
    simulated, poller = SimulatedList(), Poller()
    poller.poll(simulated.view(), 10.0)
    for _ in range(50):
        simulated.push(10.4)
    estimate = poller.poll(simulated.view(), 11.0)
    assert estimate == WaitEstimate(seconds=0.5, error=0.5)
    for now in (12.0, 13.0, 14.0):
        simulated.pop()
        estimate = poller.poll(simulated.view(), now)
        assert estimate is not None and estimate.error == 0.5
        assert holds(estimate, simulated.tail_age(now))


def test_on_start_into_a_backlog_the_age_is_at_least_the_time_since_first_seen():
    simulated, poller = SimulatedList(), Poller()
    simulated.push(0.0)
    estimate = poller.poll(simulated.view(), 300.0)
    assert estimate == WaitEstimate(seconds=0.0, error=None)
    estimate = poller.poll(simulated.view(), 305.0)
    assert estimate is not None and estimate.at_least and estimate.seconds == 5.0


def test_a_list_first_seen_on_a_broker_already_polled_is_not_taken_for_new():
    """A TaskQueue added to a broker that other TaskQueues keep polled: its list's
    backlog may be hours old, whatever the broker's previous poll was."""
    pushed = ListHistory().observe(ListView(1, tail=7, head=7), 101.0, 100.0)
    assert pushed is not None and pushed.age(120.0).at_least


def test_a_stamped_message_gives_its_exact_age():
    pushed = ListHistory().observe(ListView(3, tail=7, head=9, stamped_at=90.0), 100.0, 99.0)
    assert pushed is not None
    assert pushed.age(100.0) == WaitEstimate(seconds=10.0, error=0.0, exact=True)


def test_a_stamp_from_a_clock_ahead_gives_way_to_the_bounds():
    history = ListHistory()
    history.observe(ListView(0), 99.0, None)
    pushed = history.observe(ListView(1, tail=7, head=7, stamped_at=130.0), 100.0, 99.0)
    assert pushed is not None and not pushed.exact
    assert pushed.age(100.0) == WaitEstimate(seconds=0.5, error=0.5)


push_times = st.builds(
    lambda pushed, before, after, kind: (
        pushed,
        PushTime(pushed, pushed, exact=True)
        if kind == "exact"
        else PushTime(None if kind == "at least" else pushed - before, pushed + after),
    ),
    st.floats(min_value=0, max_value=1000),
    st.floats(min_value=0, max_value=100),
    st.floats(min_value=0, max_value=100),
    st.sampled_from(["exact", "bounded", "at least"]),
)


@given(st.lists(push_times, min_size=1, max_size=6))
def test_the_oldest_of_several_lists_holds_the_earliest_true_push(lists):
    """A queue's priority lists, a pool's queues: the oldest tail's true age is inside
    what is reported for them together, whichever list holds it."""
    combined = oldest([pushed for _, pushed in lists])
    assert combined is not None
    now = 2000.0
    assert holds(combined.age(now), now - min(true for true, _ in lists))


def test_the_oldest_of_lists_one_seen_first_and_one_stamped_is_at_least_the_stamped():
    first_seen = PushTime(earliest=None, latest=1000.0)
    stamped = PushTime(400.0, 400.0, exact=True)
    combined = oldest([first_seen, stamped])
    assert combined is not None and combined.age(1005.0) == WaitEstimate(605.0, None)
    assert oldest([None, None]) is None
