"""The fast paths of issue 19 compute what the slow paths did (no timings asserted here: the
figures come from `python -m bench.run`)."""

from __future__ import annotations

import random
import re
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

from gateway.deliveries import delivery_ids, endpoint_key
from gateway.store.sqlite import SqliteStore
from gateway.store.sqlite_acks import open_delivery_for_address


def _by_urlsplit(channel: str, address: str) -> str:
    if channel != "webhook":
        return channel
    u = urlsplit(address)
    return f"webhook:{u.scheme}://{u.netloc}"


def test_endpoint_key_matches_urlsplit_on_plain_and_odd_urls() -> None:
    odd = ["http://127.0.0.1:8080/hook/a/1", "https://Hooks.Example.com/a?b=1", "http://[::1]:8080/x",
           "HTTP://X/y", "http://u:p@h:1?x#y", "http://h#f/g", "http://h?a/b", "https://h", "http://",
           "http://h/ a", "http://h\t/x", "http://é/x", "http://h\n", "http://a]b/", "http://h/[x]", "ftp://h/x"]
    rnd = random.Random(19)
    alphabet = "htps:/?#[]@a.1:é \t%\\^~\x7f"
    odd += ["http" + rnd.choice(["", "s"]) + "://" + "".join(rnd.choice(alphabet) for _ in range(rnd.randint(0, 12)))
            for _ in range(20_000)]
    for address in odd:
        try:
            want = _by_urlsplit("webhook", address)
        except ValueError:
            continue  # urlsplit refuses it: so does the planner (via urlsplit), tested below
        assert endpoint_key("webhook", address) == want, address
    assert endpoint_key("sms", "+8613800000000") == "sms"


def test_delivery_ids_are_unique_ordered_and_of_the_usual_form() -> None:
    a, b = delivery_ids(), delivery_ids()
    first = [next(a) for _ in range(1000)]
    other = [next(b) for _ in range(1000)]
    assert all(re.fullmatch(r"dl_[0-9a-f]{20}", i) for i in first + other)
    assert first == sorted(first) and len(set(first + other)) == 2000


async def test_an_old_sqlite_file_gets_the_partial_indexes(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    store = SqliteStore(path)
    await store.open()
    await store.close()
    c = sqlite3.connect(path)
    c.execute("DROP INDEX deliveries_leased")
    c.execute("DROP INDEX deliveries_voice_address")
    c.execute("CREATE INDEX deliveries_lease ON deliveries(status, lease_until)")  # as before issue 19
    c.execute("CREATE INDEX deliveries_address ON deliveries(address, created_at)")
    c.commit()
    c.close()
    store = SqliteStore(path)
    await store.open()
    await store.close()
    c = sqlite3.connect(path)
    names = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"deliveries_leased", "deliveries_voice_address"} <= names
    assert not {"deliveries_lease", "deliveries_address"} & names
    # the reply lookup's own SQL (as run), planned on the upgraded file
    seen: list[str] = []
    c.set_trace_callback(seen.append)
    assert open_delivery_for_address(c, "+8613800000000") is None
    c.set_trace_callback(None)
    query = seen[-1].replace("'+8613800000000'", "?")
    plan = " ".join(str(r) for r in c.execute("EXPLAIN QUERY PLAN " + query, ("+8613800000000",)))
    assert "deliveries_voice_address" in plan, plan
    c.close()


def test_the_roster_version_of_extra_contacts_is_the_digest_of_the_whole_document() -> None:
    import hashlib
    import json

    from contacts.model import Contact, _extended_version

    extra = {"zezhou_b": [Contact("mobile", "+8613800000000", "13800000000", "值班")],
             "*": [Contact("url", f"http://127.0.0.1:9/hook/{i}", "raw", "webhook", "json") for i in range(50)]
             + [Contact("url", 'http://é/"x', "r", "", "cap")], "a单位": []}
    document = json.dumps({k: [c.to_json() for c in v] for k, v in extra.items()}, sort_keys=True, ensure_ascii=False)
    assert _extended_version("v1", extra) == hashlib.sha256(f"v1\n{document}".encode()).hexdigest()
    assert _extended_version("v1", {}) == hashlib.sha256(b"v1\n{}").hexdigest()


def test_a_signer_signs_as_sign_does_and_verifies() -> None:
    from channels.signing import Signer, generate_secret, sign, verify

    secret = generate_secret()
    signer = Signer(secret)
    cases = (("dl_1", 1_700_000_000, b"{}"), ("dl_" + "f" * 20, 0, "预警".encode() * 300), ("m", 5, b""))
    for msg_id, ts, body in cases:
        header = signer.sign(msg_id, ts, body)
        assert header == sign(secret, msg_id, ts, body)
        verify(secret, {"webhook-id": msg_id, "webhook-timestamp": str(ts), "webhook-signature": header}, body, now=ts)
