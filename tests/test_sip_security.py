"""SIP/RTP defences and interop rules, against raw UDP peers (the FAKE ToneSession stands in for the dialogue).

Other loopback addresses (127.0.0.2, 127.0.0.3) play third parties and other sources: on Linux the whole
127.0.0.0/8 network is local.
"""

import os
import socket
import time
import uuid

import pytest
from sipp.harness import ServerThread, SipClient
from sipp.tone_session import ToneFactory
from test_sip_server import answer_port, drain, send_key, wait

from ivr.phone import rtp
from ivr.phone.sip import server as sipserver


@pytest.fixture
def factory(tmp_path):
    return ToneFactory(tmp_path / "logs", greeting_s=5.0)


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


def udp(host: str, port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((host, port))
    return s


def received(sock: socket.socket, seconds: float) -> int:
    """Datagrams that reach ``sock`` within ``seconds``."""
    n = 0
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            sock.recvfrom(4096)
            n += 1
        except TimeoutError:
            break
    return n


def the_call(server):
    """The one SIP call of ``server`` (to be called on the server loop, inside ``server.call``)."""
    return list(server.server.sip.calls.values())[0]


# ---------------------------------------------------------------- 1. dialog matching


def test_in_dialog_requests_need_call_id_and_both_tags(server, client, factory):
    ok, local_tag = client.invite()
    assert wait(lambda: client.call_id in factory.sessions)
    session = factory.sessions[client.call_id]
    client.request("BYE", to_tag=local_tag, cseq=2, from_tag="forged")
    client.status(481, "BYE")
    client.request("BYE", to_tag="forged", cseq=3)
    client.status(481, "BYE")
    client.request("INFO", to_tag=local_tag, cseq=4, from_tag="forged", body="Signal=5\r\n",
                   ctype="application/dtmf-relay")
    client.status(481, "INFO")
    time.sleep(0.3)
    assert not session.ended and session.digits == []
    client.request("INFO", to_tag=local_tag, cseq=5, body="Signal=5\r\n", ctype="application/dtmf-relay")
    client.status(200, "INFO")
    assert wait(lambda: session.digits == ["5"])
    client.request("BYE", to_tag=local_tag, cseq=6)
    client.status(200, "BYE")
    assert wait(lambda: session.ended)


# ---------------------------------------------------------------- 2. media reflection


def test_rtp_goes_to_another_address_only_after_rtp_came_from_there(server, client):
    victim = udp("127.0.0.2")
    try:
        _, branch = client.request("INVITE", body=client.offer(address="127.0.0.2", port=victim.getsockname()[1]))
        ok = client.status(200)
        client.ack(ok)  # the blind ACK of a reflection attack
        assert received(victim, 1.0) == 0
        assert server.call(lambda: the_call(server).rtp.sender.sent) == 0  # counts only packets really sent
        # the address speaks RTP itself: now it is the call's media peer (symmetric RTP, comedia)
        victim.sendto(rtp.build_packet(0, 1, 160, 99, b"\xff" * 160), ("127.0.0.1", answer_port(ok)))
        assert received(victim, 1.0) >= 20
    finally:
        victim.close()


def test_reinvite_cannot_redirect_rtp_to_a_third_party(server, client):
    ok, local_tag = client.invite()
    assert received(client.rtp, 0.5) >= 10
    victim = udp("127.0.0.3")
    try:
        client.request("INVITE", to_tag=local_tag, cseq=2,
                       body=client.offer(address="127.0.0.3", port=victim.getsockname()[1], version=2))
        client.status(200)
        assert received(victim, 1.0) == 0
    finally:
        victim.close()


def test_media_networks_setting_sends_at_once_to_a_trusted_rtp_proxy(factory):
    srv = ServerThread(factory, media_networks=["127.0.0.2/32"])
    c = SipClient(srv.sip_port)
    proxy = udp("127.0.0.2")
    try:
        c.request("INVITE", body=c.offer(address="127.0.0.2", port=proxy.getsockname()[1]))
        c.ack(c.status(200))
        assert received(proxy, 1.0) >= 20
    finally:
        proxy.close()
        c.close()
        srv.close()


# ---------------------------------------------------------------- 3. response address


def test_responses_go_to_the_real_source_not_a_claimed_received(server, client):
    victim = udp("127.0.0.2", client.port)  # same port number, another address
    try:
        branch = "z9hG4bK" + uuid.uuid4().hex[:10]
        raw = (f"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{client.port};branch={branch};received=127.0.0.2\r\n"
               f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
               "CSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n").encode()
        client.send_raw(raw)
        assert client.status(200, "OPTIONS")
        assert received(victim, 0.3) == 0
    finally:
        victim.close()


# ---------------------------------------------------------------- 4. call slots


def open_log_fds(log_dir) -> list[str]:
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(log_dir)):
            out.append(target)
    return out


def test_unconfirmed_invites_take_no_call_slot_session_or_log(factory, tmp_path):
    srv = ServerThread(factory, max_calls=2, max_pending=10, max_pending_per_source=3)
    attackers = [SipClient(srv.sip_port) for _ in range(6)]
    good = SipClient(srv.sip_port, host="127.0.0.2")
    try:
        for a in attackers:
            a.request("INVITE", body=a.offer())
        answers = [a.wait_for(lambda m: m.status in (200, 486), 5).status for a in attackers]
        assert answers.count(200) == 3 and answers.count(486) == 3, answers
        assert factory.sessions == {} and not list((tmp_path / "logs").glob("*"))
        ok, local_tag = good.invite()
        assert received(good.rtp, 1.0) >= 20
        assert list(factory.sessions) == [good.call_id]
        good.request("BYE", to_tag=local_tag, cseq=2)
        good.status(200, "BYE")
        # un-ACKed INVITEs end at timer H (64 * T1 = 6.4 s here): then nothing of any call is left
        sip = srv.server.sip
        assert wait(lambda: srv.call(lambda: (len(sip.calls), len(sip.used_ports), srv.server.limiter.active,
                                              srv.server.limiter.n_pending)) == (0, 0, 0, 0), 15), \
            srv.call(lambda: ([c.state for c in sip.calls.values()], sip.used_ports, srv.server.limiter))
        assert wait(lambda: factory.sessions[good.call_id].ended)
        assert open_log_fds(tmp_path / "logs") == []
    finally:
        for c in attackers + [good]:
            c.close()
        srv.close()


# ---------------------------------------------------------------- 6. RTP flood


def test_rtp_flood_is_dropped_and_counted(server, client, factory):
    ok, _ = client.invite()
    port = answer_port(ok)
    assert wait(lambda: client.call_id in factory.sessions)
    session = factory.sessions[client.call_id]
    time.sleep(0.3)
    before = session.audio_frames
    t0 = time.monotonic()
    for i in range(3000):  # about 5000 packets a second: 33 times the allowed rate, in steps the socket's
        client.rtp.sendto(rtp.build_packet(0, i, 160 * i, 77, b"\x10" * 160), ("127.0.0.1", port))
        if i % 50 == 49:  # receive buffer can hold on a busy machine (a kernel drop is no count of ours)
            time.sleep(0.01)
    for i in range(5):
        client.rtp.sendto(rtp.build_packet(0, 4000 + i, 0, 77, b"\x10" * 4000), ("127.0.0.1", port))
    elapsed = time.monotonic() - t0
    time.sleep(1.0)
    dropped = server.call(lambda: the_call(server).rtp.dropped)
    fed = session.audio_frames - before
    assert fed <= sipserver.RTP_BURST + sipserver.RTP_RATE * (elapsed + 1.5), (fed, elapsed)
    assert dropped >= 5 and dropped + fed >= 1000, (dropped, fed)


# ---------------------------------------------------------------- 7. readable but invalid requests


def raw_request(client: SipClient, method: str = "OPTIONS", *, via: str | None = None, cseq: str | None = None,
                extra: str = "") -> bytes:
    via = via or f"SIP/2.0/UDP 127.0.0.1:{client.port};branch=z9hG4bK{uuid.uuid4().hex[:10]};rport"
    body = client.offer() if method == "INVITE" else ""
    return (f"{method} sip:ivr@127.0.0.1 SIP/2.0\r\nVia: {via}\r\n"
            f"From: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:ivr@127.0.0.1>\r\nCall-ID: {uuid.uuid4()}\r\n"
            f"CSeq: {cseq or '1 ' + method}\r\nContact: <sip:a@127.0.0.1:{client.port}>\r\n{extra}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n{body}").encode()


@pytest.mark.parametrize("case", ["cseq-word", "cseq-huge", "via-port-0", "via-port-99999", "two-content-length",
                                  "via-tcp"])
def test_readable_invalid_requests_get_400(server, client, case):
    port = client.port
    data = {
        "cseq-word": raw_request(client, "INVITE", cseq="one INVITE"),
        "cseq-huge": raw_request(client, "INVITE", cseq="99999999999 INVITE"),
        "via-port-0": raw_request(client, "INVITE", via=f"SIP/2.0/UDP 127.0.0.1:0;branch=z9hG4bKp0{port}"),
        "via-port-99999": raw_request(client, "INVITE", via=f"SIP/2.0/UDP 127.0.0.1:99999;branch=z9hG4bKp9{port}"),
        "two-content-length": raw_request(client, "INVITE", extra="Content-Length: 0\r\n"),
        "via-tcp": raw_request(client, "INVITE", via=f"SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bKt{port};rport"),
    }[case]
    client.send_raw(data)
    bad = client.wait_for(lambda m: m.status is not None and m.status >= 200, 3)
    assert bad.status == 400 and bad.get("Warning"), (bad.status, bad.reason)
    assert drain(client, 0.3) == [] and server.call(lambda: len(server.server.sip.calls)) == 0


# ---------------------------------------------------------------- C. interop


def test_ipv6_offer_on_an_ipv4_server_is_488(server, client):
    client.request("INVITE", body=client.offer(address="::1"))
    refused = client.wait_for(lambda m: m.status is not None and m.status >= 200, 3)
    assert refused.status == 488 and "301" in refused.get("Warning")
    assert server.call(lambda: len(server.server.sip.calls)) == 0


def _sdp(msg) -> dict:
    lines = msg.body.decode().splitlines()
    o = [ln for ln in lines if ln.startswith("o=")][0].split()
    return {"version": int(o[2]), "dir": [ln[2:] for ln in lines if ln[2:] in
                                          ("sendrecv", "sendonly", "recvonly", "inactive")][0]}


def test_hold_reinvite_answered_recvonly_with_a_new_version(server, client):
    ok, local_tag = client.invite()
    first = _sdp(ok)
    assert first["dir"] == "sendrecv"
    client.request("INVITE", to_tag=local_tag, cseq=2, body=client.offer(direction="sendonly", version=2))
    hold = client.wait_for(lambda m: m.status == 200 and m.cseq[0] == 2)
    assert _sdp(hold) == {"version": first["version"] + 1, "dir": "recvonly"}
    client.ack(hold)
    received(client.rtp, 0.2)
    assert received(client.rtp, 0.5) == 0  # on hold: the IVR sends no audio
    client.request("INVITE", to_tag=local_tag, cseq=3, body=client.offer(direction="inactive", version=3))
    inactive = client.wait_for(lambda m: m.status == 200 and m.cseq[0] == 3)
    assert _sdp(inactive) == {"version": first["version"] + 2, "dir": "inactive"}
    client.ack(inactive)
    client.request("INVITE", to_tag=local_tag, cseq=4, body=client.offer(version=4))
    back = client.wait_for(lambda m: m.status == 200 and m.cseq[0] == 4)
    assert _sdp(back) == {"version": first["version"] + 3, "dir": "sendrecv"}
    client.ack(back)
    assert received(client.rtp, 1.0) >= 20


def test_bye_glare_keeps_the_dialog_until_our_bye_is_answered(server, client, factory):
    ok, local_tag = client.invite()
    send_key(client, "9", 1600, answer_port(ok))  # the FAKE session says goodbye and hangs up
    bye = client.wait_for(lambda m: m.method == "BYE", 10)
    client.request("BYE", to_tag=local_tag, cseq=2)  # ours crosses the IVR's
    client.status(200, "BYE")
    client.reply(bye, 200)
    assert wait(lambda: server.call(lambda: len(server.server.sip.calls)) == 0)


def test_only_supported_extensions_are_advertised(server, client):
    client.request("OPTIONS")
    ok = client.status(200, "OPTIONS")
    assert "replaces" not in (ok.get("Supported") or "")
    client.request("INVITE", body=client.offer(), extra="Require: replaces\r\n")
    refused = client.status(420)
    assert refused.get("Unsupported") == "replaces"
    c2 = SipClient(server.sip_port)
    try:
        ok, _ = c2.invite()
        assert "replaces" not in (ok.get("Supported") or "")
    finally:
        c2.close()


# ---------------------------------------------------------------- D. draining


def test_draining_instance_answers_options_503(factory):
    srv = ServerThread(factory, grace=5.0)
    c = SipClient(srv.sip_port)
    try:
        ok, local_tag = c.invite()
        c.request("OPTIONS", cseq=2, call_id=f"probe-{uuid.uuid4()}")
        c.status(200, "OPTIONS")
        srv.start_shutdown()
        time.sleep(0.2)
        c.request("OPTIONS", cseq=3, call_id=f"probe-{uuid.uuid4()}")
        busy = c.status(503, "OPTIONS")
        assert busy.get("Retry-After")
        assert received(c.rtp, 0.5) >= 10  # the call in progress goes on
        c.request("BYE", to_tag=local_tag, cseq=4)
        c.status(200, "BYE")
    finally:
        c.close()
        srv.close()


# ---------------------------------------------------------------- handoff context


def test_handoff_context_headers_carry_the_question_with_identity_digits_masked():
    from ivr.phone.sip.server import context_headers
    from ivr.phone.worker import transfer_context

    events = [{"t": 0.0, "type": "start"}, {"t": 1.0, "type": "menu", "topic": "chung-thu"},
              {"t": 2.0, "type": "digit", "digit": "2"},
              {"t": 3.0, "type": "speech", "text": "số căn cước của tôi là 012345678901\r\nX-Evil: 1"},
              {"t": 3.1, "type": "match", "faq_id": 7, "decision": "confirm"},
              {"t": 4.0, "type": "digit", "digit": "0"}]
    headers = dict(context_headers(transfer_context(events)))
    assert headers["X-IVR-Entry"] == "7"
    assert headers["X-IVR-Menu-Path"] == "chung-thu 2 0"
    transcript = headers["X-IVR-Transcript"]
    assert "012345678901" not in transcript and "••••" in transcript and transcript.startswith("số căn cước")
    assert "\r" not in transcript and "\n" not in transcript  # no header injection
    typed = dict(context_headers(transfer_context([{"t": 1.0 + i / 10, "type": "digit", "digit": d}
                                                   for i, d in enumerate("0912345678")])))
    assert "0912345678" not in typed["X-IVR-Menu-Path"].replace(" ", "")
