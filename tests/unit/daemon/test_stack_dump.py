"""``kill -USR1`` prints every thread's stack, safely while threads start and end."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from daemon.cli.operations import print_stacks


def test_every_thread_is_named_with_its_stack(capsys: pytest.CaptureFixture[str]) -> None:
    ready = threading.Event()
    release = threading.Event()

    def parked_in_a_named_function() -> None:
        ready.set()
        release.wait()

    thread = threading.Thread(target=parked_in_a_named_function, name="parked-role")
    thread.start()
    try:
        ready.wait()
        print_stacks()
    finally:
        release.set()
        thread.join()
    dump = capsys.readouterr().err
    assert "(parked-role):" in dump
    assert "parked_in_a_named_function" in dump
    assert "MainThread, current thread" in dump
    assert dump.count("Thread 0x") >= 2


def test_the_signal_handler_survives_threads_starting_and_ending(
    capsys: pytest.CaptureFixture[str],
) -> None:
    previous = signal.signal(signal.SIGUSR1, print_stacks)
    stop = threading.Event()

    def churn() -> None:
        while not stop.is_set():
            workers = [threading.Thread(target=sum, args=(range(50),)) for _ in range(10)]
            for worker in workers:
                worker.start()
            for worker in workers:
                worker.join()

    churners = [threading.Thread(target=churn, name=f"churn-{n}") for n in range(2)]
    try:
        for churner in churners:
            churner.start()
        for _ in range(300):
            os.kill(os.getpid(), signal.SIGUSR1)
    finally:
        stop.set()
        for churner in churners:
            churner.join()
        signal.signal(signal.SIGUSR1, previous)
    dump = capsys.readouterr().err
    assert dump.count("stacks of ") == 300
    assert "(churn-0):" in dump
