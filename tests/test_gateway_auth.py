"""The gateway's keys and per-key bounds, without a server: the keys file, its reload, the quotas."""

from __future__ import annotations

import os
import time

import pytest

from s2s.cli import main
from s2s.gateway.auth import KeyFileError, KeyRing, Quota, hash_key, key_line, new_key, parse_keys
from s2s.gateway.jobs import FolderJobStore, Job
from s2s.gateway.quotas import Admission, QuotaError

DEFAULTS = Quota(jobs=2, rate_per_min=10.0, disk_bytes=1 << 30)


def test_keys_file_lines_and_their_errors():
    alice, bob = new_key(), new_key()
    assert alice != bob and alice.startswith("s2s_") and len(alice) > 40
    text = f"# comment\n\n{key_line('alice', alice, jobs=4, rate=30, disk=2 << 30)}\n{key_line('bob', bob)}  # ci\n"
    assert alice not in text and hash_key(alice) in text  # only the hash is stored
    callers = parse_keys(text, DEFAULTS)
    assert callers[hash_key(alice)].id == "alice" and callers[hash_key(alice)].quota == Quota(4, 30.0, 2 << 30)
    assert callers[hash_key(bob)].quota == DEFAULTS
    bad = {
        "alice sha256:abc": "64 hex",
        "alice": "expected '<key id>",
        "al/ice " + hash_key(alice): "bad key id",
        f"alice {hash_key(alice)}\nalice {hash_key(bob)}": "appears twice",
        f"alice {hash_key(alice)}\nbob {hash_key(alice)}": "already listed",
        f"alice {hash_key(alice)} jobs=0": "jobs=0",
        f"alice {hash_key(alice)} disk=lots": "disk=lots",
        f"alice {hash_key(alice)} admin=yes": "unknown option",
    }
    for text, words in bad.items():
        with pytest.raises(KeyFileError, match=words):
            parse_keys(text, DEFAULTS, "keys")


def test_keyring_rereads_a_changed_file_and_keeps_keys_when_it_breaks(tmp_path):
    path, alice, bob = tmp_path / "keys", new_key(), new_key()
    path.write_text(key_line("alice", alice) + "\n")
    ring = KeyRing(path, DEFAULTS, check_interval_s=0.0)
    assert ring.lookup(alice).id == "alice" and ring.lookup(bob) is None and ring.lookup(None) is None
    path.write_text(key_line("alice", alice) + "\n" + key_line("bob", bob) + "\n")
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    assert ring.lookup(bob).id == "bob"
    path.write_text("bob not-a-hash\n")  # a typo: the previous keys stay in force
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 2 * 10**9))
    assert ring.lookup(alice).id == "alice" and ring.lookup(bob).id == "bob"
    path.write_text(key_line("bob", bob) + "\n")  # alice revoked
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 3 * 10**9))
    assert ring.lookup(alice) is None and ring.lookup(bob).id == "bob"
    with pytest.raises(KeyFileError, match="cannot read"):
        KeyRing(tmp_path / "missing", DEFAULTS)


def test_quotas_count_jobs_on_disk_and_requests_in_flight(tmp_path):
    store = FolderJobStore(tmp_path)
    admission = Admission(store, max_sync=1, retry_after_s=7)
    alice = parse_keys(key_line("alice", new_key(), jobs=2, rate=3, disk=1000), DEFAULTS)
    (caller,) = alice.values()
    store.submit(store.create(Job(id=store.new_id(), owner="alice", size_bytes=300), b"x" * 300))  # queued: counts
    done = store.create(Job(id=store.new_id(), owner="alice", status="done"), b"y" * 200)
    store.save(done)
    store.submit(store.create(Job(id=store.new_id(), owner="bob"), b"z" * 900))  # another key's
    assert store.usage("alice") == (1, 500) and store.usage("bob") == (1, 900)

    ticket = admission.admit(caller, 100)  # an upload in flight counts until released
    assert admission.usage(caller) == {"jobs": 2, "disk_bytes": 600}
    with pytest.raises(QuotaError) as refused:
        admission.admit(caller, 10)
    assert refused.value.status == 429 and refused.value.code == "quota_jobs" and refused.value.retry_after == 7
    ticket.release()
    ticket.release()  # twice is once
    assert admission.usage(caller) == {"jobs": 1, "disk_bytes": 500}
    with pytest.raises(QuotaError) as refused:
        admission.admit(caller, 600)  # 500 stored + 600 > 1000
    assert refused.value.code == "quota_disk"
    with pytest.raises(QuotaError) as refused:
        admission.admit(caller, 1001)
    assert refused.value.status == 413
    store.delete(done.id)
    # the rate: a burst of 3 a minute, then a wait of about 20 s for the next (failed checks took none)
    for _ in range(2):
        admission.admit(caller, 1).release()
    with pytest.raises(QuotaError) as refused:
        admission.admit(caller, 1)
    assert refused.value.code == "rate_limited" and 1 <= refused.value.retry_after <= 20
    # synchronous requests: bounded all together as well
    unbounded = parse_keys(key_line("carol", new_key()), Quota(None, None, None))
    (carol,) = unbounded.values()
    first = admission.admit(carol, 1, sync=True)
    with pytest.raises(QuotaError, match="synchronous"):
        admission.admit(carol, 1, sync=True)
    first.release()
    admission.admit(carol, 1, sync=True).release()


def test_gateway_key_command_appends_a_hashed_line(tmp_path, capsys, caplog):
    keys = tmp_path / "keys"
    assert main(["gateway-key", "alice", "--keys-file", str(keys), "--jobs", "3", "--disk", "1G"]) == 0
    key = capsys.readouterr().out.strip()
    assert oct(keys.stat().st_mode & 0o777) == "0o600"
    assert key not in keys.read_text()
    (caller,) = parse_keys(keys.read_text(), DEFAULTS).values()
    assert caller.id == "alice" and caller.quota == Quota(3, 10.0, 1 << 30)
    assert KeyRing(keys, DEFAULTS).lookup(key).id == "alice"
    assert main(["gateway-key", "alice", "--keys-file", str(keys)]) == 1  # one key per id
    assert "s2s gateway-key failed" in caplog.text and "already has a key" in caplog.text
