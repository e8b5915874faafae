"""SIP message parser/serializer and SDP negotiation, with a corpus of malformed messages."""

import pytest

from ivr.phone.sip import sdp
from ivr.phone.sip.dialog import Dialog, response_address, stamp_via
from ivr.phone.sip.message import (
    MAX_MESSAGE,
    SipParseError,
    make_response,
    parse,
    parse_name_addr,
    parse_via,
    split_commas,
)

OFFER = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio 40000 RTP/AVP 8 0 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\n"
)


def invite(body: str = OFFER, extra: str = "") -> bytes:
    head = (
        "INVITE sip:ivr@127.0.0.1:5060 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport\r\n"
        "Max-Forwards: 70\r\n"
        'From: "Khách" <sip:caller@10.0.0.1:5070>;tag=abc\r\n'
        "To: <sip:ivr@127.0.0.1>\r\n"
        "Call-ID: call-1@10.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: <sip:caller@10.0.0.1:5070>\r\n"
        "Record-Route: <sip:proxy1;lr>, <sip:proxy2;lr>\r\n"
        f"{extra}"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(body.encode())}\r\n\r\n"
    )
    return head.encode() + body.encode()


def test_parse_invite_headers_and_body():
    msg = parse(invite())
    assert msg.method == "INVITE" and msg.uri == "sip:ivr@127.0.0.1:5060"
    assert msg.call_id == "call-1@10.0.0.1"
    assert msg.cseq == (1, "INVITE")
    assert msg.get_all("Record-Route") == ["<sip:proxy1;lr>", "<sip:proxy2;lr>"]
    assert msg.body.decode() == OFFER
    assert parse_name_addr(msg.get("From")).tag == "abc"
    assert parse_name_addr(msg.get("From")).display == '"Khách"'


def test_compact_headers_folding_and_round_trip():
    data = (
        b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 1.2.3.4;branch=z9hG4bKx\r\n"
        b"f: <sip:a@b>;tag=1\r\nt: <sip:ivr@c>\r\ni: xyz\r\nCSeq: 7 OPTIONS\r\n"
        b"Subject: first part\r\n  second part\r\nl: 0\r\n\r\n"
    )
    msg = parse(data)
    assert msg.get("Via").startswith("SIP/2.0/UDP 1.2.3.4") and msg.call_id == "xyz"
    assert msg.get("Subject") == "first part second part"
    again = parse(msg.to_bytes())
    assert again.headers == msg.headers and again.method == "OPTIONS"


def test_response_copies_dialog_headers_and_adds_tag():
    msg = parse(invite())
    resp = make_response(msg, 200, to_tag="xyz", body=b"v=0\r\n")
    back = parse(resp.to_bytes())
    assert back.status == 200 and back.reason == "OK"
    assert back.get("To").endswith(";tag=xyz") and back.cseq == (1, "INVITE")
    assert back.get_all("Record-Route") == msg.get_all("Record-Route")
    assert back.body == b"v=0\r\n" and back.get("Content-Length") == "5"
    assert "tag" not in (make_response(msg, 100, to_tag="xyz").get("To") or "")


def test_via_rport_and_received_pick_the_response_address():
    msg = parse(invite())
    stamp_via(msg, ("192.0.2.7", 40001))
    via = parse_via(msg.get("Via"))
    assert via.params["received"] == "192.0.2.7" and via.params["rport"] == "40001"
    assert response_address(msg, ("192.0.2.7", 40001)) == ("192.0.2.7", 40001)
    plain = parse(invite().replace(b";rport", b""))
    stamp_via(plain, ("192.0.2.7", 40001))
    assert response_address(plain, ("192.0.2.7", 40001)) == ("192.0.2.7", 5070)


def test_dialog_requests_carry_tags_cseq_and_route_set():
    msg = parse(invite())
    dialog = Dialog.from_invite(msg, "local1")
    bye = dialog.request("BYE", "127.0.0.1", 5060, "<sip:ivr@127.0.0.1:5060>")
    bye2 = dialog.request("BYE", "127.0.0.1", 5060, "<sip:ivr@127.0.0.1:5060>")
    assert bye.uri == "sip:caller@10.0.0.1:5070"
    assert bye.get("From").endswith("tag=local1") and bye.get("To").endswith("tag=abc")
    assert bye.get_all("Route") == ["<sip:proxy1;lr>", "<sip:proxy2;lr>"]
    assert bye2.cseq[0] == bye.cseq[0] + 1 and bye.cseq[1] == "BYE"
    assert parse_via(bye.get("Via")).branch != parse_via(bye2.get("Via")).branch
    assert dialog.destination(("9.9.9.9", 1)) == ("9.9.9.9", 1)  # route host is a name: fall back


def test_split_commas_respects_quotes_and_brackets():
    assert split_commas('"a, b" <sip:x@y>, <sip:z;p=1,2>') == ['"a, b" <sip:x@y>', "<sip:z;p=1,2>"]


# ------------------------------------------------------------------ malformed corpus

GOOD = invite()
CORPUS = {
    "empty": b"",
    "truncated_head": GOOD[:60],
    "truncated_body": GOOD[:-40],
    "binary_junk": bytes(range(256)) * 4,
    "random_bytes_with_crlf": b"\x00\xff\xfe\r\n\r\n\x01\x02",
    "no_via": GOOD.replace(b"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK-1;rport\r\n", b""),
    "no_cseq": GOOD.replace(b"CSeq: 1 INVITE\r\n", b""),
    "no_call_id": GOOD.replace(b"Call-ID: call-1@10.0.0.1\r\n", b""),
    "bad_content_length": GOOD.replace(b"Content-Length: ", b"Content-Length: x"),
    "negative_content_length": GOOD.replace(b"Content-Length: ", b"Content-Length: -"),
    "too_long_content_length": GOOD.replace(b"Content-Length: ", b"Content-Length: 99999"),
    "huge_header": GOOD.replace(b"Max-Forwards: 70", b"X-Pad: " + b"a" * 5000),
    "many_headers": GOOD.replace(b"Max-Forwards: 70\r\n", b"X-H: 1\r\n" * 200),
    "oversized": GOOD + b"x" * MAX_MESSAGE,
    "non_utf8_header": GOOD.replace(b'"Kh\xc3\xa1ch"', b'"Kh\xe1ch"'),
    "bad_request_line": GOOD.replace(b"INVITE sip:ivr@127.0.0.1:5060 SIP/2.0", b"INVITE"),
    "bad_version": GOOD.replace(b" SIP/2.0\r\nVia", b" SIP/3.0\r\nVia"),
    "bad_cseq": GOOD.replace(b"CSeq: 1 INVITE", b"CSeq: one INVITE"),
    "cseq_method_mismatch": GOOD.replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"),
    "bad_via": GOOD.replace(b"Via: SIP/2.0/UDP 10.0.0.1:5070", b"Via: garbage"),
    "bad_via_port": GOOD.replace(b"10.0.0.1:5070;branch", b"10.0.0.1:99999;branch"),
    "header_without_colon": GOOD.replace(b"Max-Forwards: 70", b"Max-Forwards 70"),
    "control_chars": GOOD.replace(b"Max-Forwards: 70", b"Max-Forwards: 7\x000"),
    "status_line_junk": b"SIP/2.0 abc OK\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_malformed_messages_raise_parse_error_only(name):
    with pytest.raises(SipParseError) as info:
        parse(CORPUS[name])
    assert info.value.reason


def test_malformed_corpus_keeps_enough_to_answer_400_when_possible():
    answerable = {n for n, data in CORPUS.items() if _partial_has_via(data)}
    # headers were readable: the server can answer 400 to the address in Via
    assert {"no_cseq", "no_call_id", "bad_content_length", "truncated_body", "huge_header", "cseq_method_mismatch"} <= answerable
    # nothing to answer to
    assert not {"empty", "binary_junk", "no_via", "non_utf8_header", "random_bytes_with_crlf"} & answerable


def _partial_has_via(data: bytes) -> bool:
    try:
        parse(data)
    except SipParseError as exc:
        return exc.partial is not None and exc.partial.is_request and bool(exc.partial.get("Via"))
    return True


# ------------------------------------------------------------------ SDP


def test_sdp_prefers_callers_first_codec_and_echoes_event_type():
    neg = sdp.negotiate(sdp.parse_offer(OFFER.encode()))
    assert (neg.codec, neg.payload_type, neg.event_pt) == ("PCMA", 8, 101)
    assert (neg.remote_address, neg.remote_port, neg.direction) == ("127.0.0.1", 40000, "sendrecv")
    pcmu_first = OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 0 8 96").replace("101 telephone", "96 telephone")
    neg = sdp.negotiate(sdp.parse_offer(pcmu_first.encode()))
    assert (neg.codec, neg.payload_type, neg.event_pt) == ("PCMU", 0, 96)
    answer = sdp.build_answer(neg, "127.0.0.1", 20002, 42).decode()
    assert "m=audio 20002 RTP/AVP 0 96\r\n" in answer
    assert "a=rtpmap:96 telephone-event/8000" in answer and "a=ptime:20" in answer
    back = sdp.negotiate(sdp.parse_offer(answer.encode()))
    assert (back.codec, back.event_pt, back.remote_port) == ("PCMU", 96, 20002)


def test_sdp_no_common_codec_and_bad_offers():
    with pytest.raises(sdp.SdpError, match="no common codec"):
        sdp.negotiate(sdp.parse_offer(OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 9 18").encode()))
    for bad in (
        "v=0\r\nc=IN IP4 1.2.3.4\r\n",  # no media
        OFFER.replace("m=audio 40000", "m=audio notaport"),
        OFFER.replace("c=IN IP4 127.0.0.1", "c=XX"),
        OFFER.replace("c=IN IP4 127.0.0.1\r\n", ""),
        OFFER.replace("RTP/AVP 8 0 101", "RTP/AVP 8 abc"),
        "\xff\xfe garbage",
    ):
        with pytest.raises(sdp.SdpError):
            sdp.negotiate(sdp.parse_offer(bad.encode("utf-8", "surrogateescape")))
    with pytest.raises(sdp.SdpError):
        sdp.parse_offer(b"\xff\xfe\x00")


def test_sdp_hold_and_unroutable_address():
    held = sdp.negotiate(sdp.parse_offer((OFFER + "a=sendonly\r\n").encode()))
    assert held.direction == "recvonly"
    zero = sdp.negotiate(sdp.parse_offer(OFFER.replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0").encode()))
    assert not zero.remote_routable
