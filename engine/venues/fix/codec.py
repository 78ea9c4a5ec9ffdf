"""FIX 4.4 tag=value codec, sans-IO: `encode` writes one message, `FixDecoder` reads a stream.

Rules (FIX 4.4 Vol. 2, "Message format" and "Garbled messages"):

- A message is `8=FIX.4.4|9=<len>|35=<type>|...|10=<sum>|` with SOH (0x01) for `|`.
  BodyLength counts the bytes after the 9= field's SOH up to and including the SOH
  before `10=`; CheckSum is the sum of every byte before `10=`, mod 256, in three digits.
- A frame that breaks those rules (8 not first, 9 not second or wrong, 35 not third,
  10 not last or wrong) is *garbled*: the decoder reports it as a `BadMessage` with
  `garbled=True` and resynchronizes on the next `8=FIX.4.4|`; nothing after it is lost.
  A frame whose declared body would contain the start of another message (`8=FIX.4.4|`)
  is garbled too (a truncated message followed by a good one): the good one is kept.
  The price: a value ending in "8=FIX.4.4" cannot be carried.
- A well-framed message with a bad field (a tag that is not a number, an empty value,
  a required header field missing: 49, 56, 34, 52) is *malformed*: reported with the
  SessionRejectReason a Reject (3) must carry, its MsgSeqNum when readable.
- Repeating groups are plain ordered (tag, value) pairs; the codec keeps wire order.
- Values are str or bytes (int is accepted when encoding and written in decimal); they
  are written as latin-1 so bytes pass through unchanged. A value may not be empty or
  contain SOH: `encode` refuses it rather than write a frame the other side must reject.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from zlib import adler32

from engine.errors import ExecdeskError
from engine.venues.fix.tags import GarbledReason, SessionRejectReason

SOH = b"\x01"
BEGIN_STRING = "FIX.4.4"
_START = b"8=FIX.4.4\x01"
_START_LEN = len(_START)
_CHECKSUM_LEN = 7  # b"10=ddd\x01"
#: Header fields every message must carry after 8, 9 and 35 (FIX 4.4 standard header).
REQUIRED_HEADER = (49, 56, 34, 52)

FieldValue = str | bytes | int
Field = tuple[int, FieldValue]


class FixEncodeError(ExecdeskError, ValueError):
    """A message that cannot be written as valid FIX (an empty value, an SOH in a value)."""


def byte_sum(data: bytes, end: int) -> int:
    """The sum of the bytes of `data[:end]` (CheckSum's sum), in C: the low half of an
    Adler-32 is 1 + the sum mod 65521, exact for up to 256 bytes at a time."""
    if end <= 256:
        return (adler32(data[:end] if end < len(data) else data) & 0xFFFF) - 1
    total = 0
    with memoryview(data) as view:
        for start in range(0, end, 256):
            total += (adler32(view[start : min(start + 256, end)]) & 0xFFFF) - 1
    return total


# (second, its text) and (millisecond, its text): one tuple each, replaced whole, so a
# thread reading one never sees half of another thread's update.
_SECOND: tuple[int, str] = (-1, "")
_MILLI: tuple[int, str] = (-1, "")


def utc_timestamp(epoch_seconds: float) -> str:
    """UTCTimestamp in milliseconds, as SendingTime (52) wants: YYYYMMDD-HH:MM:SS.sss."""
    global _SECOND, _MILLI
    ms = int(round(epoch_seconds * 1000))
    last = _MILLI
    if last[0] == ms:  # a burst of messages shares its millisecond
        return last[1]
    whole, millis = divmod(ms, 1000)
    second = _SECOND
    if second[0] != whole:  # the date-and-seconds part changes once a second
        second = _SECOND = (whole, time.strftime("%Y%m%d-%H:%M:%S", time.gmtime(whole)))
    text = f"{second[1]}.{millis:03d}"
    _MILLI = (ms, text)
    return text


# The text each member of a str or int enum writes (its value's), by its class: an enum
# member's `.value` is a Python-level property, and `isinstance` against Enum is not cheap.
_MEMBER_TEXT: dict[type, dict[Enum, str]] = {}


def _member_text(value: Enum) -> str:
    texts = _MEMBER_TEXT.get(value.__class__)
    if texts is None:
        texts = _MEMBER_TEXT[value.__class__] = {
            member: member.value if isinstance(member.value, str) else str(int(member.value))
            for member in value.__class__  # type: ignore[attr-defined]
        }
    text = texts.get(value)
    if text is None:  # a member not iterated (an IntFlag's combination)
        text = texts[value] = value.value if isinstance(value.value, str) else str(int(value.value))
    return text


def field_text(tag: int, value: FieldValue) -> str:
    cls = value.__class__
    if cls is str:
        text = value  # type: ignore[assignment]
    elif cls in _MEMBER_TEXT:
        text = _MEMBER_TEXT[cls].get(value) or _member_text(value)  # type: ignore[arg-type]
    elif isinstance(value, Enum) and isinstance(value, (str, int)):  # Side.BUY, Tag.ClOrdID: their value
        text = _member_text(value)
    elif isinstance(value, bytes):
        text = value.decode("latin-1")
    elif isinstance(value, int):
        text = str(int(value))
    elif isinstance(value, str):  # str enums (Side.BUY) write their value
        text = value.value if hasattr(value, "value") else str(value)
    else:
        raise FixEncodeError(f"tag {tag}: value must be str, bytes or int, got {type(value).__name__}")
    if not text:
        raise FixEncodeError(f"tag {tag}: empty value (FIX forbids a tag without a value)")
    return text


#: "tag=" per tag number met (a bounded few thousand): formatting an IntEnum tag each time
#: costs twice a plain int's.
_TAG_PREFIX: dict[int, str] = {}


def _tag_prefix(tag: int) -> str:
    prefix = f"{int(tag)}="
    if len(_TAG_PREFIX) < 4096:
        _TAG_PREFIX[tag] = prefix
    return prefix


def encode(
    msg_type: str,
    sender: str,
    target: str,
    seq_num: int,
    sending_time: str,
    body: Iterable[Field] = (),
    header: Iterable[Field] = (),
) -> bytes:
    """One FIX 4.4 message: header 8/9/35/49/56/34/52, then `header` extras (PossDupFlag,
    OrigSendingTime), then `body` in the order given, then CheckSum."""
    if msg_type.__class__ is not str:  # a MsgType member writes its value
        msg_type = msg_type.value
    parts = [f"35={msg_type}\x0149={sender}\x0156={target}\x0134={seq_num}\x0152={sending_time}\x01"]
    append = parts.append
    prefix_of = _TAG_PREFIX.get
    for tag, value in header:
        append(f"{prefix_of(tag) or _tag_prefix(tag)}{field_text(tag, value)}\x01")
    for tag, value in body:
        if value.__class__ is not str or not value:  # the common case (a str) without a call
            value = field_text(tag, value)
        append(f"{prefix_of(tag) or _tag_prefix(tag)}{value}\x01")
    text = "".join(parts)
    if text.count("\x01") != len(parts) + 4:  # the first part holds five fields
        raise FixEncodeError("a value contains SOH (0x01), which would end its field early")
    if not (msg_type and sender and target and sending_time):
        raise FixEncodeError("MsgType, SenderCompID, TargetCompID and SendingTime must not be empty")
    try:
        payload = text.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise FixEncodeError(f"a value is not latin-1 text: {exc.object[exc.start:exc.end]!r}") from None
    head = b"8=FIX.4.4\x019=%d\x01" % len(payload)
    checksum = (byte_sum(head, len(head)) + byte_sum(payload, len(payload))) & 0xFF
    return b"%b%b10=%03d\x01" % (head, payload, checksum)


class Message:
    """A decoded message: its MsgType and every field after 35 and before 10 in wire order
    (header fields, then body and repeating groups), values as bytes. Lookups by tag give
    the first occurrence (a repeating group's first entry)."""

    __slots__ = ("msg_type", "pairs", "raw", "_index")

    def __init__(self, msg_type: str, pairs: list[tuple[int, bytes]], raw: bytes = b"",
                 index: dict[int, bytes] | None = None) -> None:
        self.msg_type = msg_type
        self.pairs = pairs
        self.raw = raw
        # Reversed, so the first occurrence of a tag is the one written last and kept.
        self._index: dict[int, bytes] = dict(reversed(pairs)) if index is None else index

    def _lookup(self) -> dict[int, bytes]:
        return self._index

    def get_bytes(self, tag: int) -> bytes | None:
        return self._index.get(tag)

    def get(self, tag: int, default: str | None = None) -> str | None:
        """The first value of `tag` as text, or `default`."""
        value = self._index.get(tag)
        return default if value is None else value.decode("latin-1")

    def get_all(self, tag: int) -> list[str]:
        """Every value of `tag`, in order (a repeating group's entries)."""
        return [value.decode("latin-1") for t, value in self.pairs if t == tag]

    def __contains__(self, tag: int) -> bool:
        return tag in self._index

    @property
    def seq_num(self) -> int:
        return int(self._index[34])

    @property
    def sender(self) -> str:
        return self._index[49].decode("latin-1")

    @property
    def target(self) -> str:
        return self._index[56].decode("latin-1")

    @property
    def poss_dup(self) -> bool:
        return self._index.get(43) == b"Y"

    def body(self) -> list[tuple[int, bytes]]:
        """The fields after the standard header fields (49, 56, 34, 52, 43, 122, 97)."""
        return [(t, v) for t, v in self.pairs if t not in _HEADER_TAGS]

    def __repr__(self) -> str:
        fields = "|".join(f"{t}={'***' if t in SECRET_TAGS else v.decode('latin-1')}" for t, v in self.pairs)
        return f"Message(35={self.msg_type}|{fields})"


_HEADER_TAGS = frozenset({49, 56, 34, 52, 43, 97, 122, 115, 128, 50, 57})


@dataclass(frozen=True, slots=True)
class BadMessage:
    """A frame the decoder could not accept.

    `garbled` frames are to be ignored (no Reject, sequence number not consumed);
    malformed ones carry what a Reject (3) needs: `reject_reason`, `ref_tag`, and
    `seq_num`/`msg_type` when they could be read.
    """

    text: str
    raw: bytes
    garbled: bool
    garbled_reason: GarbledReason | None = None
    reject_reason: SessionRejectReason | None = None
    ref_tag: int | None = None
    seq_num: int | None = None
    msg_type: str | None = None

    def __repr__(self) -> str:
        return (f"BadMessage(text={self.text!r}, raw={mask_secrets(self.raw)!r}, garbled={self.garbled}, "
                f"reject_reason={self.reject_reason}, ref_tag={self.ref_tag}, seq_num={self.seq_num}, "
                f"msg_type={self.msg_type!r})")


#: Tags whose values are credentials: shown as *** wherever a message is shown.
SECRET_TAGS = frozenset({553, 554, 925})
_SECRET_FIELD = re.compile(rb"(?:(?<=\x01)|^)(553|554|925)=[^\x01]*")


def mask_secrets(raw: bytes) -> bytes:
    """`raw` with the values of the credential tags (553, 554, 925) replaced by ***."""
    return _SECRET_FIELD.sub(rb"\1=***", raw)


class FixDecoder:
    """Feed bytes in any chunking; iterate to get each whole `Message` or `BadMessage`.

    The same stream gives the same results however it is split: a decision about a frame
    is taken only once the bytes that decide it have arrived.
    """

    def __init__(self, max_body_length: int = 1 << 20) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._max_body = max_body_length
        self._skipped = 0  # garbage bytes seen since the last frame, reported once a start is found
        self._skipped_sample = b""
        self._discarding = False

    def feed(self, data: bytes) -> None:
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    def __iter__(self) -> Iterator[Message | BadMessage]:
        while True:
            item = self._next()
            if item is None:
                return
            yield item

    def _skip_to_next_start(self, start_from: int) -> None:
        """Drop bytes up to the next BeginString at or after `start_from`; count them as
        garbage unless they are the rest of a frame already reported garbled."""
        buf = self._buf
        found = buf.find(_START, start_from)
        if found < 0:
            # Keep a tail that may be the beginning of a BeginString still arriving.
            found = max(start_from, len(buf) - (_START_LEN - 1))
        if found > self._pos:
            if not self._discarding:
                if not self._skipped:
                    self._skipped_sample = bytes(buf[self._pos : min(found, self._pos + 64)])
                self._skipped += found - self._pos
            self._pos = found

    def _garbage_report(self) -> BadMessage:
        report = BadMessage(
            text=f"{self._skipped} byte(s) before a BeginString: {GarbledReason.NO_BEGIN_STRING.value}",
            raw=self._skipped_sample,
            garbled=True,
            garbled_reason=GarbledReason.NO_BEGIN_STRING,
        )
        self._skipped = 0
        self._skipped_sample = b""
        return report

    def _garbled(self, start: int, reason: GarbledReason, detail: str) -> BadMessage:
        raw = bytes(self._buf[start : start + 256])
        # Resynchronize on the next BeginString after this frame's own; the bytes up to it
        # belong to this frame, so they are dropped without a second report.
        self._pos = start + 1
        self._discarding = True
        self._skip_to_next_start(self._pos)
        return BadMessage(text=f"{reason.value}: {detail}", raw=raw, garbled=True, garbled_reason=reason)

    def _next(self) -> Message | BadMessage | None:
        buf = self._buf
        pos = self._pos
        if not buf.startswith(_START, pos):
            self._skip_to_next_start(pos)
            pos = self._pos
            if not buf.startswith(_START, pos):
                return None  # only a possible partial BeginString is left: wait
        self._discarding = False
        if self._skipped:
            return self._garbage_report()
        # 9=<digits>SOH right after the BeginString.
        len_start = pos + _START_LEN
        if len(buf) < len_start + 2:
            return None
        if buf[len_start : len_start + 2] != b"9=":
            return self._garbled(pos, GarbledReason.BAD_BODY_LENGTH, "9= is not the second field")
        len_end = buf.find(SOH, len_start + 2, len_start + 2 + 10)
        if len_end < 0:
            if len(buf) >= len_start + 2 + 10:
                return self._garbled(pos, GarbledReason.BAD_BODY_LENGTH, "no SOH within 10 digits")
            return None
        digits = bytes(buf[len_start + 2 : len_end])
        if not digits.isdigit():
            return self._garbled(pos, GarbledReason.BAD_BODY_LENGTH, f"9={digits!r} is not a number")
        body_length = int(digits)
        if body_length > self._max_body:
            return self._garbled(pos, GarbledReason.TOO_LONG, f"{body_length} > {self._max_body}")
        body_start = len_end + 1
        body_end = body_start + body_length  # index of b"10="
        frame_end = body_end + _CHECKSUM_LEN
        # Another message starting inside this one's declared body: the length is wrong.
        # (Only starts before 10= count: a later one can only be the next message, and a
        # frame that a start overlaps at 10= fails the 10= check below with the same reason.)
        embedded = buf.find(_START, body_start, min(len(buf), body_end - 1 + _START_LEN))
        if 0 <= embedded < body_end:
            return self._garbled(pos, GarbledReason.BAD_BODY_LENGTH, "another BeginString inside the declared body")
        if len(buf) < frame_end:
            return None
        if buf[body_end - 1] != 1 or buf[body_end : body_end + 3] != b"10=" or buf[frame_end - 1] != 1:
            return self._garbled(pos, GarbledReason.BAD_BODY_LENGTH, f"9={body_length} does not end at 10=")
        sum_digits = bytes(buf[body_end + 3 : frame_end - 1])
        raw = bytes(buf[pos:frame_end])
        checksum = byte_sum(raw, body_end - pos) & 0xFF
        if not sum_digits.isdigit() or checksum != int(sum_digits):
            return self._garbled(
                pos, GarbledReason.BAD_CHECKSUM, f"10={sum_digits.decode('latin-1')}, bytes sum to {checksum:03d}"
            )
        self._pos = frame_end
        return _parse_fields(raw, body_start - pos, body_end - pos)


class _TagNumbers(dict):  # type: ignore[type-arg]
    """Tag text -> tag number, learned as met (a bounded few thousand); a text that is not
    all digits raises KeyError."""

    def __missing__(self, text: bytes) -> int:
        if len(text) > 9 or not text.isdigit():  # bytes.isdigit is ASCII only
            raise KeyError(text)
        number = int(text)
        if len(self) < 4096:
            self[text] = number
        return number


_TAG_NUMBERS = _TagNumbers()


#: Every byte but "=" and SOH: deleted, they leave a message's skeleton.
_NOT_EQ_OR_SOH = bytes(b for b in range(256) if b not in b"=\x01")


def _parse_fields(raw: bytes, body_start: int, body_end: int) -> Message | BadMessage:
    # The common case in C: every field holds exactly one "=" (its skeleton is "=SOH" per
    # field), so the fields split into tag, value, tag, value...; with every tag a number,
    # no value empty, 35 first and the header complete, that split is the message.
    body = raw[body_start:body_end]
    fields = body.count(b"\x01")
    if body.translate(None, _NOT_EQ_OR_SOH) == b"=\x01" * fields:
        parts = body.replace(b"\x01", b"=").split(b"=")
        values = parts[1::2]
        if parts[0] == b"35" and b"" not in values:
            try:
                tags = list(map(_TAG_NUMBERS.__getitem__, parts[2:-1:2]))
            except KeyError:  # a tag that is not a number
                tags = None
            if tags is not None:
                pairs = list(zip(tags, values[1:]))
                index = dict(reversed(pairs))
                seq_text = index.get(34)
                if (49 in index and 56 in index and 52 in index and seq_text is not None
                        and len(seq_text) <= 18 and seq_text.isdigit()):
                    return Message(values[0].decode("latin-1"), pairs, raw, index)
    return _parse_fields_slowly(raw, body_start, body_end)


def _parse_fields_slowly(raw: bytes, body_start: int, body_end: int) -> Message | BadMessage:
    """Field by field, to name the first problem (a message `_parse_fields` did not pass)."""
    fields = raw[body_start:body_end].split(b"\x01")
    fields.pop()  # the empty piece after the last SOH
    first = fields[0]
    if not first.startswith(b"35=") or len(first) == 3:
        return BadMessage(text=GarbledReason.NO_MSG_TYPE.value, raw=raw, garbled=True,
                          garbled_reason=GarbledReason.NO_MSG_TYPE)
    msg_type = first[3:].decode("latin-1")
    pairs: list[tuple[int, bytes]] = []
    problem: tuple[SessionRejectReason, int | None, str] | None = None
    append = pairs.append
    for field in fields[1:]:
        tag_text, sep, value = field.partition(b"=")
        if len(tag_text) <= 9 and tag_text.isdigit() and value:
            append((int(tag_text), value))
            continue
        if problem is not None:
            continue
        if not sep or not (len(tag_text) <= 9 and tag_text.isdigit()):
            problem = (SessionRejectReason.INVALID_TAG_NUMBER, None,
                       f"tag {tag_text[:20].decode('latin-1')!r} is not a number")
        else:
            problem = (SessionRejectReason.TAG_SPECIFIED_WITHOUT_A_VALUE, int(tag_text),
                       f"tag {int(tag_text)} has no value")
    message = Message(msg_type, pairs, raw)
    index = message._lookup()
    seq_text = index.get(34)
    seq_num = int(seq_text) if seq_text is not None and len(seq_text) <= 18 and seq_text.isdigit() else None
    if problem is None:
        for tag in REQUIRED_HEADER:
            if tag not in index:
                problem = (SessionRejectReason.REQUIRED_TAG_MISSING, tag, f"required tag {tag} missing")
                break
        else:
            if seq_num is None:
                problem = (SessionRejectReason.INCORRECT_DATA_FORMAT, 34,
                           f"MsgSeqNum(34) {seq_text[:20].decode('latin-1')!r} is not a number")
    if problem is None:
        return message
    reason, ref_tag, text = problem
    return BadMessage(text=text, raw=raw, garbled=False, reject_reason=reason, ref_tag=ref_tag,
                      seq_num=seq_num, msg_type=msg_type)
