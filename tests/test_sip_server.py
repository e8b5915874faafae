"""The SIP/RTP server against a raw UDP peer, with the FAKE ToneSession standing in for the dialogue.

The real CallSession is exercised over the same server by the real-peer tests (sipp, baresip).
"""

import json
import socket
import time

import pytest
from sipp.harness import ServerThread, SipClient
from sipp.tone_session import ToneFactory
from test_sip_message import CORPUS

from ivr.phone import rtp
from ivr.phone.admission import AllowList
from ivr.phone.sip.message import parse_via
from ivr.phone.worker import PREFETCH


@pytest.fixture
def factory(tmp_path):
    return ToneFactory(tmp_path / "logs", greeting_s=1.0)


@pytest.fixture
def server(factory):
    srv = ServerThread(factory)
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def client(server):
    c = SipClient(server.sip_port)
    try:
        yield c
    finally:
        c.close()


def rtp_packets(sock: socket.socket, n: int, timeout: float = 5.0) -> list[rtp.RtpPacket]:
    sock.settimeout(timeout)
    return [rtp.RtpPacket.parse(sock.recvfrom(2048)[0]) for _ in range(n)]


def send_key(client: SipClient, key: str, ts: int, dest_port: int, ssrc: int = 77, sock=None) -> None:
    sock = sock or client.rtp
    seq = ts // 10
    for i in range(5):
        payload = rtp.event_payload(key, False, 160 * (i + 1))
        sock.sendto(rtp.build_packet(101, seq + i, ts, ssrc, payload, i == 0), ("127.0.0.1", dest_port))
    for i in range(3):
        sock.sendto(rtp.build_packet(101, seq + 5 + i, ts, ssrc, rtp.event_payload(key, True, 800)),
                    ("127.0.0.1", dest_port))


def answer_port(ok) -> int:
    line = [ln for ln in ok.body.decode().splitlines() if ln.startswith("m=audio")][0]
    return int(line.split()[1])


def drain(client: SipClient, seconds: float) -> list:
    """Everything the server sends ``client`` for ``seconds`` (read from the socket, kept in its inbox)."""
    got = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        msg = client.receive(min(0.1, left))
        if msg is not None:
            got.append(msg)
    return got


def wait(pred, timeout: float = 10.0) -> bool:
    """``pred()`` turned true within ``timeout`` s (a KeyError: the session is not made yet, keep waiting)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if pred():
                return True
        except KeyError:
            pass
        time.sleep(0.02)
    return pred()


def test_call_answer_media_keys_and_caller_bye(server, client, factory, tmp_path):
    _, branch = client.request("INVITE", body=client.offer("0 8 101"))
    trying = client.status(100)
    assert "tag=" not in trying.get("To")
    ringing = client.status(180)
    ok = client.status(200)
    assert ringing.get("To") == ok.get("To") and "tag=" in ok.get("To")
    body = ok.body.decode()
    assert "m=audio" in body and " RTP/AVP 0 101" in body and "a=rtpmap:101 telephone-event/8000" in body
    assert "INVITE" in ok.get("Allow") and ok.get("Contact")
    assert parse_via(ok.get("Via")).params["rport"] == str(client.port)
    client.ack(ok)
    packets = rtp_packets(client.rtp, 25)
    session = factory.sessions[client.call_id]

    def snapshot():  # on the server loop, between two media ticks
        (call,) = server.server.sip.active_calls()
        return call.rtp.sender.sent, call.worker.underruns, session.reads, session.last_read_t, call.worker.now()

    sent, underruns, reads, last_t, call_now = server.call(snapshot)
    # the session is read one frame per packet sent (a packet the worker had no frame for in time is
    # silence), PREFETCH (3) frames ahead at most, each read at the call time of its frame: never before
    # the frames already read, never beyond the prefetch window
    assert sent >= 25 and sent - underruns <= reads <= sent + PREFETCH + 1, (sent, underruns, reads)
    assert (reads - 2) * 0.02 - 0.005 <= last_t <= call_now + PREFETCH * 0.02 + 0.005, (reads, last_t, call_now)
    assert {p.payload_type for p in packets} == {0}
    assert len({p.ssrc for p in packets}) == 1
    assert all((b.sequence - a.sequence) % 65536 == 1 for a, b in zip(packets, packets[1:], strict=False))
    assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(packets, packets[1:], strict=False))
    speech = [bool(rtp.decode(p.payload, "PCMU").any()) for p in packets]
    assert packets[0].marker and any(speech)
    # marker on the first packet and on the first packet of each talkspurt, nowhere else
    assert [p.marker for p in packets[1:]] == [s and not prev for prev, s in zip(speech, speech[1:], strict=False)]
    assert all(len(p.payload) == 160 for p in packets)
    assert max(rtp.decode(packets[10].payload, "PCMU")) > 4000  # the greeting tone
    port = answer_port(ok)
    for ts, key in ((16000, "5"), (32000, "#")):
        send_key(client, key, ts, port)
    assert wait(lambda: session.digits == ["5", "#"]), session.digits
    # a packet from another source port is ignored (latched on the SDP address and port)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger.bind(("127.0.0.1", 0))
    send_key(client, "7", 48000, port, sock=stranger)
    stranger.close()
    # caller audio reaches the session as 20 ms int16 frames
    for i in range(10):
        client.rtp.sendto(rtp.build_packet(0, 500 + i, 9000 + 160 * i, 77, b"\x10" * 160), ("127.0.0.1", port))
    assert wait(lambda: session.audio_frames >= 10)
    client.request("BYE", to_tag=ok.get("To").split("tag=")[1], cseq=2)
    client.status(200, "BYE")
    assert wait(lambda: session.ended)
    assert session.digits == ["5", "#"]
    assert session.max_inside == 1  # never two threads in the session at once
    assert all(name.startswith("call-worker") for name in session.threads)  # never the event loop
    log = [json.loads(line) for line in (tmp_path / "logs" / f"{client.call_id}.jsonl").read_text().splitlines()]
    assert [e["type"] for e in log][-1] == "hangup" and log[-1]["reason"] == "caller"
    assert wait(lambda: server.server.limiter.active == 0)


def test_codec_follows_caller_preference(server, client):
    ok, _ = client.invite("8 0 101")
    assert " RTP/AVP 8 101" in ok.body.decode() and "PCMA/8000" in ok.body.decode()
    packets = rtp_packets(client.rtp, 3)
    assert {p.payload_type for p in packets} == {8}


def test_no_common_codec_or_no_offer_is_488(server, client):
    client.request("INVITE", body=client.offer("9 18"))
    resp = client.status(488)
    assert "no common codec" in resp.get("Warning")
    client.call_id += "x"
    client.request("INVITE")
    client.status(488)
    client.call_id += "y"
    client.request("INVITE", body="v=0\r\nthis is not sdp\r\n")
    client.status(488)


def test_busy_when_max_calls_reached(factory):
    srv = ServerThread(factory, max_calls=1)
    a, b = SipClient(srv.sip_port), SipClient(srv.sip_port)
    try:
        a.invite()
        b.request("INVITE", body=b.offer())
        b.status(486)
    finally:
        a.close()
        b.close()
        srv.close()


def test_cancel_before_answer(factory):
    srv = ServerThread(factory, ring=3.0)
    c = SipClient(srv.sip_port)
    try:
        _, branch = c.request("INVITE", body=c.offer())
        c.status(180)
        c.request("CANCEL", branch=branch)
        c.status(200, "CANCEL")
        terminated = c.status(487)
        c.ack(terminated, branch=branch)
        assert not any(m.status == 200 and m.cseq[1] == "INVITE" for m in c.inbox)
        assert wait(lambda: srv.server.limiter.active == 0)
        assert c.call_id not in factory.sessions  # a call never confirmed never gets a session
        c.request("CANCEL", branch="z9hG4bKunknown", call_id="nope")
        c.status(481, "CANCEL")
    finally:
        c.close()
        srv.close()


def test_options_unknown_methods_and_out_of_dialog_bye(server, client):
    client.request("OPTIONS")
    ok = client.status(200, "OPTIONS")
    assert "INVITE" in ok.get("Allow") and ok.get("Accept") == "application/sdp"
    client.request("SUBSCRIBE")
    assert "INVITE" in client.status(501, "SUBSCRIBE").get("Allow")
    client.request("BYE", to_tag="zzz")
    client.status(481, "BYE")


def test_malformed_corpus_never_stops_the_server(server, client):
    for _name, data in sorted(CORPUS.items()):
        client.send_raw(data.replace(b"5070", str(client.port).encode()))
    client.request("OPTIONS")
    client.status(200, "OPTIONS")
    bad = [m for m in client.inbox if m.status == 400]
    assert len(bad) >= 5 and all(m.get("Warning") for m in bad)
    assert server.server.sip.stats["bad"] >= len(CORPUS) - 1


def test_200_retransmitted_until_timer_h_then_bye(factory):
    srv = ServerThread(factory, t1=0.05, t2=0.2)  # timer H = 64*T1 = 3.2 s
    client = SipClient(srv.sip_port)
    try:
        _timer_h(client)
    finally:
        client.close()
        srv.close()


def _timer_h(client):
    client.request("INVITE", body=client.offer())
    first = client.status(200)
    times = [time.monotonic()]
    bye = None
    end = time.monotonic() + 15
    while time.monotonic() < end:
        msg = client.receive(1.0)
        if msg is None:
            continue
        if msg.status == 200:
            times.append(time.monotonic())
        if msg.method == "BYE":
            bye = msg
            break
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert len(gaps) >= 5  # t1=0.05 s doubling to t2=0.2 s until 64*t1 = 3.2 s
    assert gaps[0] < gaps[2] and max(gaps) < 0.5
    assert bye is not None and bye.get("To").startswith("<sip:caller") and first.get("To").split("tag=")[1] in bye.get("From")


def test_ivr_hangs_up_with_its_own_bye(server, client, factory):
    ok, local_tag = client.invite()
    port = answer_port(ok)
    send_key(client, "9", 1600, port)
    bye = client.wait_for(lambda m: m.method == "BYE", 10)
    assert bye.get("From").endswith(f"tag={local_tag}") and bye.get("To").endswith(f"tag={client.tag}")
    assert bye.call_id == client.call_id and bye.uri == f"sip:caller@127.0.0.1:{client.port}"
    client.reply(bye, 200)
    session = factory.sessions[client.call_id]
    assert session.ended and [e["type"] for e in session.events][-1] == "hangup"
    assert wait(lambda: server.server.limiter.active == 0)


def test_bye_is_retransmitted_until_answered(server, client):
    ok, _ = client.invite()
    send_key(client, "9", 1600, answer_port(ok))
    first = client.wait_for(lambda m: m.method == "BYE", 10)
    again = client.wait_for(lambda m: m.method == "BYE", 5)
    assert again.cseq == first.cseq and again.get("Via") == first.get("Via")
    client.reply(again, 200)


def test_transfer_refer_accepted_then_notify_200(factory):
    srv = ServerThread(factory, operator_uri="sip:operator@127.0.0.1:5099")
    c = SipClient(srv.sip_port)
    try:
        ok, _ = c.invite()
        send_key(c, "0", 1600, answer_port(ok))
        refer = c.wait_for(lambda m: m.method == "REFER", 10)
        assert refer.get("Refer-To") == "<sip:operator@127.0.0.1:5099>"
        c.reply(refer, 202)
        c.request("NOTIFY", to_tag=ok.get("To").split("tag=")[1], cseq=5, body="SIP/2.0 200 OK\r\n",
                  ctype="message/sipfrag", extra="Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n")
        c.status(200, "NOTIFY")
        bye = c.wait_for(lambda m: m.method == "BYE", 10)
        c.reply(bye, 200)
        assert factory.sessions[c.call_id].transfer_failures == 0
    finally:
        c.close()
        srv.close()


def test_transfer_refused_or_not_configured_goes_back_to_the_session(factory):
    srv = ServerThread(factory, operator_uri="sip:operator@127.0.0.1:5099")
    c = SipClient(srv.sip_port)
    try:
        ok, _ = c.invite()
        send_key(c, "0", 1600, answer_port(ok))
        refer = c.wait_for(lambda m: m.method == "REFER", 10)
        c.reply(refer, 603)
        session = factory.sessions[c.call_id]
        assert wait(lambda: session.transfer_failures == 1)
        # accepted, then the operator leg fails: NOTIFY with a 486 sipfrag
        send_key(c, "0", 8000, answer_port(ok))
        refer = c.wait_for(lambda m: m.method == "REFER", 10)
        c.reply(refer, 202)
        c.request("NOTIFY", to_tag=ok.get("To").split("tag=")[1], cseq=6, body="SIP/2.0 486 Busy Here\r\n",
                  ctype="message/sipfrag", extra="Event: refer\r\nSubscription-State: terminated\r\n")
        assert wait(lambda: session.transfer_failures == 2)
    finally:
        c.close()
        srv.close()
    srv = ServerThread(factory)  # no operator configured
    c = SipClient(srv.sip_port)
    try:
        ok, _ = c.invite()
        send_key(c, "0", 1600, answer_port(ok))
        assert wait(lambda: c.call_id in factory.sessions and factory.sessions[c.call_id].transfer_failures == 1)
        # a REFER would come within a few T1 (0.1 s) retransmissions: read the socket, then look
        drain(c, 1.0)
        assert not any(m.method == "REFER" for m in c.inbox), [c._line(m) for m in c.inbox]
    finally:
        c.close()
        srv.close()


def test_reinvite_answered_with_the_current_sdp(server, client):
    ok, local_tag = client.invite()
    client.request("INVITE", body=client.offer(), to_tag=local_tag, cseq=2)
    again = client.wait_for(lambda m: m.status == 200 and m.cseq == (2, "INVITE"))
    assert again.body == ok.body
    client.ack(again)
    client.request("OPTIONS", to_tag=local_tag, cseq=3)
    client.status(200, "OPTIONS")


def test_info_dtmf_relay_is_a_key(server, client, factory):
    _, local_tag = client.invite()
    client.request("INFO", to_tag=local_tag, cseq=2, body="Signal=4\r\nDuration=160\r\n",
                   ctype="application/dtmf-relay")
    client.status(200, "INFO")
    assert wait(lambda: factory.sessions[client.call_id].digits == ["4"])


def test_unroutable_sdp_address_latches_on_first_packet(server, client, factory):
    ok, _ = client.invite(address="0.0.0.0")
    port = answer_port(ok)
    client.rtp.settimeout(0.3)
    with pytest.raises(socket.timeout):
        client.rtp.recvfrom(2048)  # nowhere to send yet
    client.rtp.sendto(rtp.build_packet(0, 1, 160, 9, b"\xff" * 160), ("127.0.0.1", port))
    assert rtp_packets(client.rtp, 3)
    send_key(client, "3", 3200, port)
    assert wait(lambda: factory.sessions[client.call_id].digits == ["3"])


def test_shutdown_refuses_new_calls_and_hangs_up_the_rest(factory):
    srv = ServerThread(factory, grace=1.0, goodbye=0.5)
    a, b = SipClient(srv.sip_port), SipClient(srv.sip_port)
    try:
        a.invite()
        srv.start_shutdown()
        assert wait(lambda: srv.server.limiter.draining)
        b.request("INVITE", body=b.offer())
        assert b.status(503).get("Retry-After")
        bye = a.wait_for(lambda m: m.method == "BYE", 10)
        a.reply(bye, 200)
        assert wait(lambda: factory.sessions[a.call_id].ended)
        assert factory.sessions[a.call_id].events[-1]["type"] == "hangup"
    finally:
        a.close()
        b.close()
        srv.close()


def test_allow_list():
    allow = AllowList.parse(["10.1.0.0/16", "192.0.2.5"])
    assert allow.allows("127.0.0.1") and allow.allows("10.1.2.3") and allow.allows("192.0.2.5")
    assert not allow.allows("10.2.0.1") and not allow.allows("192.0.2.6") and not allow.allows("junk")
    assert allow.allows("::ffff:10.1.0.9")
    from ivr.errors import IvrError

    with pytest.raises(IvrError, match="10.0.0.0/33"):
        AllowList.parse(["10.0.0.0/33"])


def test_silent_caller_is_hung_up_but_not_a_caller_on_hold(factory):
    srv = ServerThread(factory, media_timeout=1.0)
    quiet, held = SipClient(srv.sip_port), SipClient(srv.sip_port)
    try:
        quiet.invite()
        _, tag = held.invite()
        held.request("INVITE", body=held.offer().replace("a=sendrecv", "a=inactive"), to_tag=tag, cseq=2)
        again = held.wait_for(lambda m: m.status == 200 and m.cseq == (2, "INVITE"))
        held.ack(again)
        bye = quiet.wait_for(lambda m: m.method == "BYE", 10)
        assert "no media" in bye.get("Reason")
        quiet.reply(bye, 200)
        # the held call has sent no media for longer than media_timeout too: read its socket for 2.5 s more
        drain(held, 2.5)
        assert not any(m.method == "BYE" for m in held.inbox), [held._line(m) for m in held.inbox]
        assert not factory.sessions[held.call_id].ended
    finally:
        quiet.close()
        held.close()
        srv.close()
