"""Several `ivr serve` instances behind Debian's Kamailio with deploy/kamailio/kamailio.cfg (dispatcher with
OPTIONS probing, Record-Route, failover): calls from sipp spread over the instances, a killed instance is
routed around, a draining one leaves the rotation while its call in progress finishes, and the IVR's own
BYE and REFER travel the Record-Route path through the proxy.

Kamailio runs as a foreground child (-DD -E) with its own config values, dispatcher list and runtime dir
in a temp dir, on free ports; every wait has a deadline.
"""

import json
import shutil
import signal
import time

import pytest
from sipp.harness import IvrServe, Kamailio, ServerThread, SipClient, run_sipp, scenario
from sipp.tone_session import ToneFactory
from test_sip_server import answer_port, send_key, wait

pytestmark = [
    pytest.mark.realpeer,
    pytest.mark.skipif(shutil.which("kamailio") is None, reason="kamailio is not installed (apt: kamailio)"),
]


def instance(tmp_path, name: str, *args: str) -> IvrServe:
    d = tmp_path / name
    d.mkdir()
    return IvrServe(d, "--model", "none", *args)


def calls_logged(ivr: IvrServe) -> list[str]:
    """Call-IDs of the calls an instance logged."""
    out = []
    for path in sorted(ivr.log_dir.glob("*.jsonl")) if ivr.log_dir.exists() else []:
        first = path.read_text(encoding="utf-8").splitlines()[:1]
        if first:
            out.append(json.loads(first[0]).get("call_id"))
    return out


def through_proxy(client: SipClient, proxy_port: int):
    """INVITE via the proxy, ACK along the Record-Route path; returns (200 OK, to-tag, in-dialog sender)."""
    client.request("INVITE", body=client.offer(), uri=f"sip:ivr@127.0.0.1:{proxy_port}")
    ok = client.status(200, timeout=15)
    local_tag = ok.get("To").split("tag=")[1].split(";")[0]
    target = ok.get("Contact").strip("<>")
    routes = "".join(f"Route: {r}\r\n" for r in reversed(ok.get_all("Record-Route")))
    assert routes, "the proxy did not Record-Route the call"

    def in_dialog(method, **kw):
        extra = routes + kw.pop("extra", "")
        return client.request(method, to_tag=local_tag, uri=target, extra=extra, **kw)

    in_dialog("ACK", cseq=ok.cseq[0])
    client.rtp.settimeout(10)
    client.rtp.recvfrom(2048)  # the ACK went round through the proxy: the call is up, media flows
    return ok, local_tag, in_dialog


def test_calls_spread_over_instances_and_a_killed_one_is_routed_around(tmp_path):
    a = instance(tmp_path, "a")
    b = instance(tmp_path, "b")
    kam = None
    try:
        kam = Kamailio(tmp_path, [a.sip_port, b.sip_port])
        scen = scenario(tmp_path, "uac_proxy.xml", hold_ms=800)
        result = run_sipp(scen, kam.port, tmp_path, calls=6, concurrent=3, rate=5, timeout=60)
        assert result.returncode == 0, (result, kam.log())
        assert wait(lambda: len(calls_logged(a)) + len(calls_logged(b)) == 6, 10)
        assert calls_logged(a) and calls_logged(b), (calls_logged(a), calls_logged(b))
        # one instance dies: calls still get through (failover on timeout, then probing takes it out)
        before_b = len(calls_logged(b))
        a.stop()
        result = run_sipp(scen, kam.port, tmp_path, calls=4, concurrent=2, rate=5, timeout=60)
        assert result.returncode == 0, (result, kam.log())
        assert wait(lambda: len(calls_logged(b)) == before_b + 4, 10), kam.log()
    finally:
        if kam:
            kam.stop()
        a.stop()
        b.stop()


def test_draining_instance_leaves_rotation_while_its_call_finishes(tmp_path):
    a = instance(tmp_path, "a", "--grace", "60")
    b = instance(tmp_path, "b", "--grace", "60")
    kam = None
    client = None
    try:
        kam = Kamailio(tmp_path, [a.sip_port, b.sip_port])
        client = SipClient(kam.port)
        ok, local_tag, in_dialog = through_proxy(client, kam.port)
        assert wait(lambda: client.call_id in calls_logged(a) + calls_logged(b), 10)
        draining, other = (a, b) if client.call_id in calls_logged(a) else (b, a)
        draining.proc.send_signal(signal.SIGTERM)
        time.sleep(3.0)  # a few probe intervals: the 503 to OPTIONS takes it out of rotation
        seen = len(kam.log_path.read_text(errors="replace"))
        scen = scenario(tmp_path, "uac_proxy.xml", hold_ms=300)
        result = run_sipp(scen, kam.port, tmp_path, calls=6, concurrent=2, rate=5, timeout=60)
        assert result.returncode == 0, (result, kam.log())
        assert wait(lambda: len(calls_logged(other)) == 6, 10), kam.log()
        assert calls_logged(draining) == [client.call_id]  # no new call reached the draining instance...
        routed = kam.log_path.read_text(errors="replace")[seen:]
        # ...not even to be refused and failed over: the dispatcher does not send it any (no flapping)
        assert f"to instance sip:127.0.0.1:{draining.sip_port}" not in routed, routed[-3000:]
        # the call in progress on it goes on, then ends through the proxy
        client.rtp.settimeout(5)
        assert len(client.rtp.recvfrom(2048)[0]) > 12
        in_dialog("BYE", cseq=2)
        client.status(200, "BYE", timeout=10)
        assert draining.proc.wait(15) == 0  # its last call over, it exits by itself
    finally:
        if client:
            client.close()
        if kam:
            kam.stop()
        a.stop()
        b.stop()


def test_ivr_refer_with_context_and_bye_go_through_the_proxy(tmp_path):
    factory = ToneFactory(tmp_path / "logs", greeting_s=5.0)
    srv = ServerThread(factory, operator_uri="sip:operator@127.0.0.1:5999")
    kam = None
    client = None
    try:
        kam = Kamailio(tmp_path, [srv.sip_port])
        client = SipClient(kam.port)
        ok, local_tag, in_dialog = through_proxy(client, kam.port)
        send_key(client, "0", 1600, answer_port(ok))  # the FAKE session asks for the operator
        refer = client.wait_for(lambda m: m.method == "REFER", 10)
        vias = refer.get_all("Via")
        assert len(vias) == 2 and f":{kam.port}" in vias[0], vias  # relayed by the proxy
        assert refer.get("Refer-To") == "<sip:operator@127.0.0.1:5999>"
        assert refer.get("X-IVR-Menu-Path") == "0"
        client.reply(refer, 202)
        in_dialog("NOTIFY", cseq=3, body="SIP/2.0 200 OK\r\n", ctype="message/sipfrag",
                  extra="Event: refer\r\nSubscription-State: terminated;reason=noresource\r\n")
        client.status(200, "NOTIFY")
        bye = client.wait_for(lambda m: m.method == "BYE", 10)
        assert len(bye.get_all("Via")) == 2 and f":{kam.port}" in bye.get_all("Via")[0]
        client.reply(bye, 200)
        assert wait(lambda: srv.call(lambda: len(srv.server.sip.calls)) == 0, 10)
        log = [json.loads(x) for x in (tmp_path / "logs" / f"{client.call_id}.jsonl").read_text().splitlines()]
        assert any(e["type"] == "transfer" for e in log)
    finally:
        if client:
            client.close()
        if kam:
            kam.stop()
        srv.close()
