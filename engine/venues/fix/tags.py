"""FIX 4.4 tag numbers and the enumerated values execdesk speaks (FIX 4.4 data dictionary).

Only the tags and values the codec, the session and the venue use are named here; any
other tag still travels as a plain int. Values are `str` enums so they go on the wire as
themselves (`Side.BUY` is "1").
"""

from __future__ import annotations

from enum import Enum, IntEnum


class Tag(IntEnum):
    Account = 1
    AvgPx = 6
    BeginSeqNo = 7
    BeginString = 8
    BodyLength = 9
    CheckSum = 10
    ClOrdID = 11
    CumQty = 14
    EndSeqNo = 16
    ExecID = 17
    LastPx = 31
    LastQty = 32
    MsgSeqNum = 34
    MsgType = 35
    NewSeqNo = 36
    OrderID = 37
    OrderQty = 38
    OrdStatus = 39
    OrdType = 40
    OrigClOrdID = 41
    PossDupFlag = 43
    Price = 44
    RefSeqNum = 45
    SenderCompID = 49
    SendingTime = 52
    Side = 54
    Symbol = 55
    TargetCompID = 56
    Text = 58
    TimeInForce = 59
    TransactTime = 60
    EncryptMethod = 98
    HeartBtInt = 108
    TestReqID = 112
    OrigSendingTime = 122
    GapFillFlag = 123
    ResetSeqNumFlag = 141
    ExecType = 150
    LeavesQty = 151
    MDReqID = 262
    SubscriptionRequestType = 263
    MarketDepth = 264
    NoMDEntryTypes = 267
    NoMDEntries = 268
    MDEntryType = 269
    MDEntryPx = 270
    MDEntrySize = 271
    MDUpdateAction = 279
    SecurityReqID = 320
    SecurityResponseID = 322
    SecurityRequestResult = 560
    SecurityListRequestType = 559
    NoRelatedSym = 146
    RefTagID = 371
    RefMsgType = 372
    SessionRejectReason = 373
    BusinessRejectRefID = 379
    BusinessRejectReason = 380
    CxlRejResponseTo = 434
    CxlRejReason = 102
    MassStatusReqID = 584
    MassStatusReqType = 585
    TotNumReports = 911
    LastRptRequested = 912
    # Logon credentials: never shown (codec masks them in every repr).
    Username = 553
    Password = 554
    NewPassword = 925
    # Orders, market data and instruments as the venue speaks them (AggressorSide 2446 is
    # from a later FIX version; 20001-20004 are execdesk's own, user-defined):
    Commission = 12
    CommType = 13
    ExDestination = 100
    OrdRejReason = 103
    ExpireTime = 126
    SecurityExchange = 207
    MDUpdateType = 265
    MDEntryDate = 272
    MDEntryTime = 273
    MDReqRejReason = 281
    NumberOfOrders = 346
    TotNoRelatedSym = 393
    RoundLot = 561
    MinTradeVol = 562
    OrdStatusReqID = 790
    LastLiquidityInd = 851
    LastFragment = 893
    MinPriceIncrement = 969
    TradeID = 1003
    MaxTradeVol = 1140
    AggressorSide = 2446
    MinNotional = 20001
    MaxNotional = 20002
    MakerFeeBps = 20003
    TakerFeeBps = 20004


class MsgType(str, Enum):
    HEARTBEAT = "0"
    TEST_REQUEST = "1"
    RESEND_REQUEST = "2"
    REJECT = "3"
    SEQUENCE_RESET = "4"
    LOGOUT = "5"
    EXECUTION_REPORT = "8"
    ORDER_CANCEL_REJECT = "9"
    LOGON = "A"
    NEW_ORDER_SINGLE = "D"
    ORDER_CANCEL_REQUEST = "F"
    ORDER_CANCEL_REPLACE_REQUEST = "G"
    ORDER_STATUS_REQUEST = "H"
    ORDER_MASS_STATUS_REQUEST = "AF"
    MARKET_DATA_REQUEST = "V"
    MARKET_DATA_SNAPSHOT = "W"
    MARKET_DATA_INCREMENTAL = "X"
    BUSINESS_MESSAGE_REJECT = "j"
    SECURITY_LIST_REQUEST = "x"
    SECURITY_LIST = "y"


#: Session-level (administrative) message types: a resend answers them with a gap fill.
ADMIN_MSG_TYPES = frozenset({"0", "1", "2", "3", "4", "5", "A"})


class OrdStatus(str, Enum):
    NEW = "0"
    PARTIALLY_FILLED = "1"
    FILLED = "2"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    SUSPENDED = "9"
    PENDING_NEW = "A"
    CALCULATED = "B"
    EXPIRED = "C"
    ACCEPTED_FOR_BIDDING = "D"
    PENDING_REPLACE = "E"


class ExecType(str, Enum):
    NEW = "0"
    DONE_FOR_DAY = "3"
    CANCELED = "4"
    REPLACED = "5"
    PENDING_CANCEL = "6"
    STOPPED = "7"
    REJECTED = "8"
    SUSPENDED = "9"
    PENDING_NEW = "A"
    CALCULATED = "B"
    EXPIRED = "C"
    RESTATED = "D"
    PENDING_REPLACE = "E"
    TRADE = "F"
    TRADE_CORRECT = "G"
    TRADE_CANCEL = "H"
    ORDER_STATUS = "I"


class Side(str, Enum):
    BUY = "1"
    SELL = "2"


class OrdType(str, Enum):
    MARKET = "1"
    LIMIT = "2"
    STOP = "3"
    STOP_LIMIT = "4"


class TimeInForce(str, Enum):
    DAY = "0"
    GOOD_TILL_CANCEL = "1"
    AT_THE_OPENING = "2"
    IMMEDIATE_OR_CANCEL = "3"
    FILL_OR_KILL = "4"
    GOOD_TILL_DATE = "6"


class SessionRejectReason(IntEnum):
    """SessionRejectReason (373) of a Reject (3)."""

    INVALID_TAG_NUMBER = 0
    REQUIRED_TAG_MISSING = 1
    TAG_NOT_DEFINED_FOR_MESSAGE_TYPE = 2
    UNDEFINED_TAG = 3
    TAG_SPECIFIED_WITHOUT_A_VALUE = 4
    VALUE_IS_INCORRECT = 5
    INCORRECT_DATA_FORMAT = 6
    DECRYPTION_PROBLEM = 7
    SIGNATURE_PROBLEM = 8
    COMPID_PROBLEM = 9
    SENDING_TIME_ACCURACY_PROBLEM = 10
    INVALID_MSGTYPE = 11
    TAG_APPEARS_MORE_THAN_ONCE = 13
    TAG_SPECIFIED_OUT_OF_REQUIRED_ORDER = 14
    OTHER = 99


class GarbledReason(str, Enum):
    """Why a frame is garbled (FIX 4.4 Vol. 2, "Garbled messages"): it is ignored, never
    rejected, and its sequence number is not consumed; the gap it leaves is resent."""

    NO_BEGIN_STRING = "BeginString(8) is not first or is not 8=FIX.4.4"
    BAD_BODY_LENGTH = "BodyLength(9) is missing, not second, or not the body's byte count"
    BAD_CHECKSUM = "CheckSum(10) is missing, not last, or not the sum of the bytes mod 256"
    NO_MSG_TYPE = "MsgType(35) is not the third field"
    TOO_LONG = "BodyLength(9) is over the decoder's limit"
