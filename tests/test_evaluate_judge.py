"""The win-rate judge: verdict parser, both orders, ties, malformed output, both backends."""
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from qlearn.data import Turn, Window
from qlearn.evaluate.judge import EndpointJudge, HFJudge, judge_prompt, parse_verdict, win_rate


def _windows(n=3):
    return [Window(id=f"w{i}", turns=[Turn("Ann", f"Did you finish the report number {i}?"),
                                      Turn("Bob", "Almost, give me an hour.")],
                   responder="Bob", querier="Ann", role_pair_id=1) for i in range(n)]


@pytest.mark.parametrize("text,verdict", [
    ("Verdict: 1", "1"), ("verdict: **2**", "2"), ("Verdict: tie", "tie"), ("VERDICT - Reply 2", "2"),
    ("[[1]]", "1"), ("2", "2"), ("Reply 1.", "1"), ("Reply 1 is more likely, because it is short.", "1"),
    ("I would choose reply 2 here.", "2"), ("Both replies are equally plausible.", "tie"),
    ("", None), ("banana", None), ("Reply 1 is better. No, reply 2 is better.", None),
    ("Reply 3", None),
])
def test_parse_verdict(text, verdict):
    assert parse_verdict(text) == verdict


def test_both_orders_cancel_position_bias():
    windows = _windows()
    a, b = ["good reply"] * 3, ["bad reply"] * 3
    always_first = win_rate(lambda ps: ["Verdict: 1"] * len(ps), windows, a, b)
    assert (always_first.wins, always_first.losses, always_first.rate) == (3, 3, 50.0)

    def prefers_good(prompts):  # a judge with a real preference, whatever the position
        return ["Verdict: 1" if p.split("[Reply 1] ")[1].startswith("good") else "Verdict: 2"
                for p in prompts]

    assert win_rate(prefers_good, windows, a, b).rate == 100.0
    assert win_rate(prefers_good, windows, b, a).rate == 0.0
    mixed = win_rate(lambda ps: ["Verdict: tie", "nonsense"] * (len(ps) // 2), windows, a, b)
    assert (mixed.ties, mixed.invalid, mixed.rate) == (3, 3, 50.0)
    assert "3 invalid" in str(mixed)
    with pytest.raises(ValueError, match="one reply per window"):
        win_rate(prefers_good, windows, a[:2], b)


def test_prompt_shows_both_replies_and_names():
    p = judge_prompt(_windows(1)[0], "first one", "")
    assert "[Reply 1] first one" in p and "[Reply 2] (empty)" in p and "Bob" in p and "Ann: Did" in p


@pytest.mark.slow
def test_smollm2_judge_plumbing(smollm2):
    judge = HFJudge(*smollm2, max_new_tokens=12)
    res = win_rate(judge, _windows(2), ["Almost done, one hour.", "Yes"], ["No.", "Maybe later."])
    assert res.judged + res.invalid == 4 and len(res.records) == 2
    assert all(isinstance(r, str) for rec in res.records for r in rec["raw"])


def test_endpoint_judge_against_local_server(monkeypatch):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append((self.path, self.headers.get("Authorization"), body))
            out = json.dumps({"choices": [{"message": {"content": "Verdict: 2"}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("QLEARN_JUDGE_BASE_URL", f"http://127.0.0.1:{server.server_port}/v1")
        monkeypatch.setenv("QLEARN_JUDGE_MODEL", "judge-model")
        monkeypatch.setenv("QLEARN_JUDGE_API_KEY", "k")
        res = win_rate(EndpointJudge(), _windows(2), ["a", "b"], ["c", "d"])
    finally:
        server.shutdown()
    assert (res.wins, res.losses) == (2, 2)  # "2" = B when A is first, A when B is first
    assert seen[0][0] == "/v1/chat/completions" and seen[0][1] == "Bearer k"
    assert seen[0][2]["model"] == "judge-model" and seen[0][2]["temperature"] == 0
    monkeypatch.delenv("QLEARN_JUDGE_BASE_URL")
    with pytest.raises(ValueError, match="QLEARN_JUDGE_BASE_URL"):
        EndpointJudge()
