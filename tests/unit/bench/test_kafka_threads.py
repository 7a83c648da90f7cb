"""The harness's view of Kafka's CPU: each broker thread's name to its group, and a live process's threads read from /proc."""

from __future__ import annotations

import os
import threading

from tests.unit.bench.bench_modules import load


def test_broker_thread_names_fall_into_their_groups():
    kt = load("kafka_threads")
    names = {
        "C2 CompilerThread0": "jit", "C1 CompilerThread0": "jit", "GC Thread#1": "gc", "G1 Conc#0": "gc",
        "data-plane-kafka-network-thread-1-BROKER-SASL_PLAINTEXT-2": "network",
        "data-plane-kafka-request-handler-7": "requests", "group-coordinator-event-processor-3": "groups",
        "ReplicaFetcherThread-0-2": "replication", "kafka-3-raft-io-thread": "kraft",
        "quorum-controller-1-event-handler": "kraft", "broker-2-to-controller-heartbeat-channel-manager": "kraft",
        "kafka-scheduler-4": "other", "": "other",
    }
    assert {name: kt.group_of(name) for name in names} == names


def test_the_cpu_of_each_thread_of_a_live_process_is_read():
    kt = load("kafka_threads")
    stop = threading.Event()
    worker = threading.Thread(target=lambda: stop.wait(5))
    worker.start()
    try:
        found = kt.thread_cpu(os.getpid())
    finally:
        stop.set()
        worker.join()
    assert os.getpid() in found and worker.native_id in found
    assert all(seconds >= 0 for seconds in found.values())
