"""The agent's mean task run time, from Little's law over a sliding window."""

from __future__ import annotations

from stalk_agent.service_time import ServiceTime


def test_steady_tasks_give_their_run_time():
    """Two slots, each starting a 3 s task as the last ends: two starts per 3 s."""
    clock, started = ServiceTime(window=60), 0
    for second in range(0, 61):
        if second % 3 == 0:
            started += 2
        clock.sample(float(second), running=2, started=started)
    measured = clock.seconds()
    assert measured is not None and abs(measured - 3.0) < 0.2


def test_nothing_started_in_the_window_says_nothing():
    clock = ServiceTime(window=10)
    for second in range(30):
        clock.sample(float(second), running=0, started=5)
    assert clock.seconds() is None


def test_the_window_forgets_old_work():
    clock, started = ServiceTime(window=20), 0
    for second in range(0, 40):  # 10 s tasks on one slot, then 1 s tasks
        long_phase = second < 20
        if (long_phase and second % 10 == 0) or not long_phase:
            started += 1
        clock.sample(float(second), running=1, started=started)
    measured = clock.seconds()
    assert measured is not None and measured < 1.5
