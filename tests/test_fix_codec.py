"""The FIX 4.4 codec against simplefix (an independent reference) and under bad input."""

from __future__ import annotations

import pytest
import simplefix
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.venues.fix import (
    BadMessage,
    FixDecoder,
    FixEncodeError,
    GarbledReason,
    Message,
    OrdStatus,
    ExecType,
    OrdType,
    SessionRejectReason,
    Side,
    TimeInForce,
    encode,
    utc_timestamp,
)

NOW = 1_700_000_000.123
NEW_ORDER = [(11, "ord-1"), (55, "BTC-USD"), (54, Side.BUY), (38, "1.5"), (40, OrdType.LIMIT),
             (44, "100.25"), (59, TimeInForce.DAY), (60, "20231114-22:13:20.123")]
EXEC_REPORT = [(37, "V-1"), (11, "ord-1"), (17, "E-1"), (150, ExecType.TRADE), (39, OrdStatus.PARTIALLY_FILLED),
               (55, "BTC-USD"), (54, Side.BUY), (38, "1.5"), (44, "100.25"), (32, "0.5"), (31, "100.25"),
               (151, "1"), (14, "0.5"), (6, "100.25"), (60, "20231114-22:13:20.123")]
# A MarketDataSnapshot with a repeating group (268 entries of 269/270/271): order must survive.
SNAPSHOT = [(262, "md-1"), (55, "BTC-USD"), (268, "3"), (269, "0"), (270, "99.5"), (271, "2"),
            (269, "1"), (270, "100.5"), (271, "3"), (269, "2"), (270, "100"), (271, "0.1")]
SAMPLES = [("D", NEW_ORDER), ("8", EXEC_REPORT), ("W", SNAPSHOT), ("0", []), ("A", [(98, "0"), (108, "30")])]


def wire(value) -> str:
    return value.value if hasattr(value, "value") else str(value)


def ours(msg_type: str, body, seq: int = 7) -> bytes:
    return encode(msg_type, "DESK", "VENUE", seq, utc_timestamp(NOW), body)


def decode_all(data: bytes) -> list:
    decoder = FixDecoder()
    decoder.feed(data)
    return list(decoder)


def test_simplefix_parses_every_message_we_write_with_the_same_fields() -> None:
    for msg_type, body in SAMPLES:
        parser = simplefix.FixParser()
        parser.append_buffer(ours(msg_type, body))
        parsed = parser.get_message()
        assert parsed is not None, msg_type
        pairs = [(int(t), v.decode()) for t, v in parsed.pairs]
        assert pairs[:3] == [(8, "FIX.4.4"), (9, pairs[1][1]), (35, msg_type)]
        assert pairs[3:7] == [(49, "DESK"), (56, "VENUE"), (34, "7"), (52, "20231114-22:13:20.123")]
        assert pairs[7:-1] == [(t, wire(v)) for t, v in body]
        assert pairs[-1][0] == 10
        # simplefix recomputes both framing fields when it writes the same pairs.
        again = simplefix.FixMessage()
        for tag, value in pairs[2:-1]:
            again.append_pair(tag, value)
        again.append_pair(8, "FIX.4.4", header=True)
        assert again.encode() == ours(msg_type, body)


def simplefix_message(msg_type: str, body, seq: int = 3) -> bytes:
    message = simplefix.FixMessage()
    message.append_pair(8, "FIX.4.4", header=True)
    message.append_pair(35, msg_type, header=True)
    message.append_pair(49, "VENUE", header=True)
    message.append_pair(56, "DESK", header=True)
    message.append_pair(34, seq, header=True)
    message.append_pair(52, "20231114-22:13:20.123", header=True)
    for tag, value in body:
        message.append_pair(tag, wire(value))
    return message.encode()


def test_we_decode_every_message_simplefix_writes() -> None:
    for msg_type, body in SAMPLES:
        [message] = decode_all(simplefix_message(msg_type, body))
        assert isinstance(message, Message), message
        assert message.msg_type == msg_type
        assert (message.sender, message.target, message.seq_num) == ("VENUE", "DESK", 3)
        assert [(t, v.decode()) for t, v in message.body()] == [(t, wire(v)) for t, v in body]


def test_fields_read_as_text_and_repeating_groups_keep_their_order() -> None:
    [message] = decode_all(ours("W", SNAPSHOT))
    assert message.get(55) == "BTC-USD"
    assert message.get(270) == "99.5"  # the first entry
    assert message.get_all(270) == ["99.5", "100.5", "100"]
    assert message.get_all(269) == ["0", "1", "2"]
    assert message.get(9999, "none") == "none"


def test_body_length_and_checksum_follow_the_standard() -> None:
    data = ours("0", [])
    head, _, rest = data.partition(b"\x0135=")
    body = b"35=" + rest[: rest.index(b"10=")]
    assert head.endswith(b"9=%d" % len(body))
    assert data.endswith(b"10=%03d\x01" % (sum(data[: data.index(b"10=", len(head))]) % 256))


def test_encode_refuses_values_that_would_break_the_frame() -> None:
    for bad in ("", "a\x01b"):
        try:
            ours("D", [(11, bad)])
        except FixEncodeError as exc:
            assert "tag 11" in str(exc) or "SOH" in str(exc)
        else:
            raise AssertionError(f"{bad!r} was written")


def test_utc_timestamp_is_milliseconds_in_utc() -> None:
    assert utc_timestamp(NOW) == "20231114-22:13:20.123"
    assert utc_timestamp(1_700_000_000.9999) == "20231114-22:13:21.000"


def frame(fields: str) -> bytes:
    """A frame with correct BodyLength and CheckSum around `fields` (| for SOH)."""
    body = fields.replace("|", "\x01").encode()
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % (sum(head + body) % 256)


GOOD = frame("35=0|49=A|56=B|34=9|52=20231114-22:13:20.123|")


def test_garbled_frames_are_reported_and_the_next_message_still_decodes() -> None:
    bad_sum = GOOD[:-4] + (b"000" if not GOOD.endswith(b"=000\x01") else b"001") + b"\x01"
    too_long = GOOD.replace(b"9=", b"9=1", 1)
    not_third = frame("49=A|35=0|56=B|34=9|52=x|")
    cases = [
        (b"garbage" + GOOD, GarbledReason.NO_BEGIN_STRING),
        (bad_sum + GOOD, GarbledReason.BAD_CHECKSUM),
        (too_long + GOOD, GarbledReason.BAD_BODY_LENGTH),
        (b"8=FIX.4.4\x019=x\x01" + GOOD, GarbledReason.BAD_BODY_LENGTH),
        (not_third + GOOD, GarbledReason.NO_MSG_TYPE),
    ]
    for data, reason in cases:
        bad, good = decode_all(data)
        assert isinstance(bad, BadMessage) and bad.garbled and bad.garbled_reason is reason, (data, bad)
        assert isinstance(good, Message) and good.seq_num == 9


def test_malformed_messages_carry_the_session_reject_reason() -> None:
    cases = [
        ("35=D|49=A|56=B|34=4|52=t|x1=5|", SessionRejectReason.INVALID_TAG_NUMBER, None),
        ("35=D|49=A|56=B|34=4|52=t|11=|", SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE, 11),
        ("35=D|49=A|34=4|52=t|11=o|", SessionRejectReason.REQUIRED_TAG_MISSING, 56),
        ("35=D|49=A|56=B|52=t|11=o|", SessionRejectReason.REQUIRED_TAG_MISSING, 34),
        ("35=D|49=A|56=B|34=4x|52=t|", SessionRejectReason.INCORRECT_DATA_FORMAT, 34),
    ]
    for fields, reason, ref_tag in cases:
        bad, good = decode_all(frame(fields) + GOOD)
        assert isinstance(bad, BadMessage) and not bad.garbled, fields
        assert (bad.reject_reason, bad.ref_tag, bad.msg_type) == (reason, ref_tag, "D"), fields
        assert bad.seq_num == (4 if "34=4|" in fields else None)
        assert isinstance(good, Message)


def test_a_truncated_message_does_not_swallow_the_one_after_it() -> None:
    bad, good = decode_all(ours("D", NEW_ORDER)[:40] + GOOD)
    assert bad.garbled_reason is GarbledReason.BAD_BODY_LENGTH
    assert good.seq_num == 9


STREAM = [ours(t, body, seq=n) for n, (t, body) in enumerate(SAMPLES * 2, start=1)]


def summary(items: list) -> list:
    return [(i.msg_type, i.pairs) if isinstance(i, Message) else (i.garbled_reason, i.reject_reason) for i in items]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=sum(map(len, STREAM))), max_size=30))
def test_any_split_of_a_stream_decodes_to_the_same_messages(cuts: list[int]) -> None:
    data = b"".join(STREAM)
    decoder = FixDecoder()
    out = []
    previous = 0
    for cut in sorted(cuts) + [len(data)]:
        decoder.feed(data[previous:cut])
        out.extend(decoder)
        previous = cut
    assert summary(out) == summary(decode_all(data))
    assert [m.seq_num for m in out] == list(range(1, len(STREAM) + 1))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_a_flipped_byte_is_reported_and_the_next_message_decodes(data) -> None:
    victim = data.draw(st.integers(min_value=0, max_value=len(STREAM) - 2))
    offset = data.draw(st.integers(min_value=0, max_value=len(STREAM[victim]) - 1))
    flip = data.draw(st.integers(min_value=1, max_value=255))
    broken = bytearray(STREAM[victim])
    broken[offset] ^= flip
    stream = b"".join(STREAM[:victim]) + bytes(broken) + b"".join(STREAM[victim + 1 :])
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=10))
    decoder = FixDecoder()
    out = []
    previous = 0
    for cut in sorted(cuts) + [len(stream)]:
        decoder.feed(stream[previous:cut])
        out.extend(decoder)
        previous = cut
    bad = [item for item in out if isinstance(item, BadMessage)]
    good = [item.seq_num for item in out if isinstance(item, Message)]
    assert bad, "the flipped byte went unnoticed"
    # Every other message survives; the victim itself may still decode only if the flip
    # made it a malformed (reported) message, never a silently different good one.
    assert [n for n in good if n != victim + 1] == [n for n in range(1, len(STREAM) + 1) if n != victim + 1]
    assert victim + 1 not in good
    assert summary(out) == summary(decode_all(stream))


_PIECES = [b"=", b"\x01", b"1", b"0", b"35", b"34", b"49", b"x", b"", b"=5", b"58=a=b"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 40), st.sampled_from(_PIECES)), max_size=4))
def test_the_fast_parse_and_the_field_by_field_parse_agree_on_any_body(edits) -> None:
    """Bodies mutated anywhere (an "=" too many or missing, an empty value, a letter in a
    tag): the one-split parse gives exactly what the field-by-field parse gives."""
    from engine.venues.fix.codec import _parse_fields, _parse_fields_slowly

    body = bytearray(b"35=D\x0149=DESK\x0156=VENUE\x0134=7\x0152=20260101-00:00:00.000\x0111=o-1\x0158=a b\x01")
    for at, piece in edits:
        at = min(at, len(body) - 1)
        body[at:at + (1 if piece == b"" else 0)] = piece
    if not body.endswith(b"\x01"):
        body += b"\x01"
    raw = bytes(body)

    def seen(m):
        return (type(m).__name__, getattr(m, "msg_type", None), getattr(m, "pairs", None), getattr(m, "text", None),
                getattr(m, "ref_tag", None), getattr(m, "reject_reason", None), getattr(m, "seq_num", None))

    assert seen(_parse_fields(raw, 0, len(raw))) == seen(_parse_fields_slowly(raw, 0, len(raw)))


def _frame(body: bytes) -> bytes:
    head = b"8=FIX.4.4\x019=%d\x01" % len(body)
    return head + body + b"10=%03d\x01" % ((sum(head) + sum(body)) & 0xFF)


@pytest.mark.parametrize(("field", "says"), [
    ("\u00b2=5".encode("latin-1"), "tag '\u00b2' is not a number"),
    (b"9" * 5000 + b"=5", "tag '99999999999999999999' is not a number"),
])
def test_a_tag_of_odd_or_endless_digits_is_a_malformed_field_not_a_crash(field, says) -> None:
    header = b"35=D\x0149=DESK\x0156=VENUE\x0134=2\x0152=20260101-00:00:00.000\x01"
    decoder = FixDecoder()
    decoder.feed(_frame(header + field + b"\x01"))
    [bad] = list(decoder)
    assert isinstance(bad, BadMessage) and not bad.garbled and bad.text == says and bad.seq_num == 2


def test_a_sequence_number_of_endless_digits_is_not_a_crash() -> None:
    decoder = FixDecoder()
    decoder.feed(_frame(b"35=0\x0149=DESK\x0156=VENUE\x0134=" + b"7" * 5000 + b"\x0152=20260101-00:00:00.000\x01"))
    [bad] = list(decoder)
    assert isinstance(bad, BadMessage) and bad.seq_num is None and "is not a number" in bad.text
