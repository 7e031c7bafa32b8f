"""How the fault suite judges a trial: made-up records and ledgers, each with a known flaw."""

from __future__ import annotations

from faultlib.checks import (
    Accepted,
    DeviceEntry,
    LedgerEntry,
    Targets,
    failures,
    judge,
)

NODES = ["push1"]


def device(n: int, state: str = "valid") -> DeviceEntry:
    return DeviceEntry(n, f"token-{n}", state)


def row(n: int, status: str = "delivered", node: str = "push1") -> LedgerEntry:
    return LedgerEntry(f"t-{node}-{n}", node, n, status, 1)


def sent(n: int, at: float, node: str = "push1", key: str | None = None) -> Accepted:
    tracking = f"t-{node}-{n}"
    return Accepted("apns", f"token-{n}", tracking, key or tracking, at)


def test_a_clean_trial_passes() -> None:
    findings = judge(
        NODES,
        [device(1), device(2), device(3, "invalid")],
        {"token-3"},
        [row(1), row(2), row(3, "token_gone")],
        [sent(1, 10.0), sent(2, 11.0)],
        [],
    )
    assert (findings.expected, findings.lost, findings.extra) == (2, 0, 0)
    assert findings.unregistered == 1
    assert failures(findings, True, Targets(in_flight_bound=1)) == []


def test_a_valid_device_without_an_accepted_push_is_lost() -> None:
    findings = judge(
        NODES, [device(1), device(2)], set(), [row(1), row(2, "failed")], [sent(1, 1)], []
    )
    assert findings.lost == 1
    assert "lost=1" in failures(findings, True, Targets(in_flight_bound=10))


def test_each_push_node_counts_on_its_own() -> None:
    findings = judge(
        ["push1", "push2"],
        [device(1)],
        set(),
        [row(1), row(1, node="push2")],
        [sent(1, 1.0), sent(1, 2.0)],  # two copies of push1, none of push2
        [],
    )
    assert (findings.expected, findings.lost, findings.extra) == (2, 1, 1)


def test_extra_copies_are_charged_to_the_disruption_between_them() -> None:
    records = [sent(1, 1.0), sent(1, 5.0), sent(2, 2.0), sent(2, 6.0), sent(2, 9.0)]
    # token-3: both copies after the first disruption (a batch dispatched twice after it)
    records += [sent(3, 4.0), sent(3, 4.5), sent(3, 4.6)]
    devices = [device(1), device(2), device(3)]
    findings = judge(NODES, devices, set(), [row(1), row(2), row(3)], records, [3.0, 8.0])
    assert findings.extra == 5
    assert findings.extra_by_disruption == [4, 1]
    assert findings.extra_max_per_device == 2
    assert findings.extra_unexplained == 0
    assert failures(findings, True, Targets(in_flight_bound=3)) == []
    assert failures(findings, True, Targets(in_flight_bound=2)) == [
        "extra copies after 2 disruptions=5 (bound 2 each; the most after one: 4)"
    ]


def test_kills_in_quick_succession_each_keep_their_own_extra_copies() -> None:
    # token-1 and token-2 were in flight at the kill at 3.0 and resent only after the kill
    # at 4.0 (whose worker had sent nothing yet); token-3 was in flight at the second kill
    records = [sent(1, 1.0), sent(1, 6.0), sent(2, 2.0), sent(2, 7.0)]
    records += [sent(3, 3.5), sent(3, 6.5)]
    devices = [device(1), device(2), device(3)]
    findings = judge(NODES, devices, set(), [row(1), row(2), row(3)], records, [3.0, 4.0])
    assert findings.extra_by_disruption == [2, 1]
    assert findings.extra_unexplained == 0


def test_a_connection_fault_explains_a_copy_only_while_the_answer_was_in_flight() -> None:
    records = [sent(1, 1.0), sent(1, 30.0), sent(2, 100.0), sent(2, 130.0)]
    records += [sent(3, 50.0), sent(3, 80.0), sent(4, 70.0), sent(4, 90.0)]
    findings = judge(
        NODES,
        [device(n) for n in range(1, 5)],
        set(),
        [row(n) for n in range(1, 5)],
        records,
        [],
        # within 15 s after token-1's first copy, just before token-3's (in the same read of
        # the connection), 0.5 s before token-4's (another read)
        connection_faults={"apns": [1.5, 49.99, 69.5]},
        answer_window_s=15.0,
    )
    assert findings.extra_after_connection_faults == 2
    assert findings.extra_unexplained == 2
    # (four pushes: the connection faults' 2% allowance is none)
    assert failures(findings, True, Targets(in_flight_bound=10)) == [
        "extra copies neither a disruption nor a connection fault explains=2",
        "extra copies after connection faults=2 (at most 2% of 4 pushes: 0)",
    ]
    lenient = Targets(in_flight_bound=10, connection_extra_share=0.5)
    assert failures(findings, True, lenient) == [
        "extra copies neither a disruption nor a connection fault explains=2"
    ]


def test_copies_under_different_display_keys_show_twice() -> None:
    records = [sent(1, 1.0, key="a"), sent(1, 2.0, key="b"), sent(2, 1.0), sent(2, 2.0)]
    findings = judge(NODES, [device(1), device(2)], set(), [row(1), row(2)], records, [1.5])
    assert findings.shown_twice == 1


def test_a_record_with_a_display_key_is_judged_by_it_not_its_collapse_id() -> None:
    record = {
        "provider": "fcm",
        "token": "token-1",
        "tracking_id": "t-push1-1",
        "collapse_id": "same",
        "display_key": "own",
        "received_at": 3.5,
    }
    assert Accepted.from_record(record).display_key == "own"
    assert Accepted.from_record(record | {"display_key": None}).display_key == "same"


def test_the_ledger_disagrees_both_ways_but_unknown_is_neither() -> None:
    ledger = [row(1), row(2, "pending"), row(3, "unknown"), row(4, "unknown"), row(5, "failed")]
    records = [sent(2, 1.0), sent(3, 1.0), sent(5, 1.0)]
    devices = [device(n) for n in range(1, 6)]
    findings = judge(NODES, devices, set(), ledger, records, [])
    assert findings.delivered_not_accepted == 1  # row 1
    assert findings.accepted_not_delivered == 2  # rows 2 and 5
    assert (findings.unknown, findings.unknown_accepted, findings.pending) == (2, 1, 1)
    assert findings.lost == 2  # devices 1 and 4
    assert findings.statuses == {"delivered": 1, "failed": 1, "pending": 1, "unknown": 2}


def test_requests_the_ledger_cannot_place_are_unexplained_extra_copies() -> None:
    stray = Accepted("apns", "token-1", "no-such-row", "k", 1.0)
    wrong_token = Accepted("apns", "token-2", "t-push1-1", "k", 1.0)
    findings = judge(NODES, [device(1), device(2)], set(), [row(1)], [stray, wrong_token], [])
    assert findings.unattributed == 2
    assert findings.extra_unexplained == 2
    assert findings.lost == 2


def test_invalidation_is_checked_both_ways() -> None:
    devices = [device(1, "valid"), device(2, "invalid"), device(3, "quarantined")]
    findings = judge(NODES, devices, {"token-1", "token-2"}, [], [], [])
    assert findings.unregistered_not_invalidated == 1  # token-1 still valid
    assert findings.valid_invalidated == 1  # token-3 quarantined though registered
    assert failures(findings, False, Targets(in_flight_bound=1))[:1] == ["run did not complete"]
