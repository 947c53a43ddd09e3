"""The live off-policy estimate, through a real daemon: lists served, impressions and clicks logged back."""

from __future__ import annotations

import io
import math
import time

from rich.console import Console

from rtrec.dashboard import render
from rtrec.serve.testing import FAST_CONFIG, DaemonProcess
from tests.serve.test_daemon import wait_learned

T0 = 1_700_000_000
CONFIG = (
    FAST_CONFIG.format(checkpoint_every_s=30.0)
    + '\n[labels]\nimpression_window_s = 1.0\n\n[ope]\nlive_policies = ["none", "epsilon=0.5"]\n'
)


def test_live_estimates_match_what_was_logged(tmp_path):
    with DaemonProcess(tmp_path / "home", config=CONFIG).start() as d:
        items = [{"item_id": f"i{j}", "title": f"item {j}", "category": f"c{j % 4}"} for j in range(60)]
        d.post("/v1/items", items)
        warm = [
            {"event_id": f"w{n}", "ts": T0 + n, "user_id": f"u{n % 5}", "item_id": f"i{n % 60}", "event_type": "click"}
            for n in range(100)
        ]
        # Known users get the pipeline, whose lists the live estimates cover (a stranger's are not).
        wait_learned(d, d.post("/v1/events", warm)["last_seq"])
        stats = d.get("/v1/stats")
        assert stats["ope"]["window_requests"] == 0
        shown = clicks = 0
        last = 0
        for r in range(40):
            rec = d.get(f"/v1/recommend?user_id=u{r % 5}&k=5")
            rid = rec["request_id"]
            evs = [
                {
                    "event_id": f"imp{r}-{j}",
                    "ts": T0 + 1000 + r,
                    "user_id": f"u{r % 5}",
                    "item_id": it["item_id"],
                    "event_type": "impression",
                    "request_id": rid,
                    "propensity": it["propensity"],
                }
                for j, it in enumerate(rec["items"])
            ]
            shown += len(evs)
            for j, it in enumerate(rec["items"]):
                # This user clicks only what exploration showed (never the greedy top 5).
                if it["propensity"] < 0.5:
                    evs.append({**evs[j], "event_id": f"clk{r}-{j}", "event_type": "click", "ts": T0 + 1001 + r})
                    clicks += 1
            last = d.post("/v1/events", evs)["last_seq"]
        wait_learned(d, last)
        time.sleep(1.2)  # the impression window: the lists settle
        ope = d.get("/v1/stats")["ope"]
        assert ope["window_requests"] == 40 and ope["impressions"] == shown == 200
        assert ope["observed_click_rate"] == clicks / shown
        live = ope["policies"]["live"]
        # The live policy weighs its own log by one: its estimate is what was observed.
        assert math.isclose(live["ips"]["value"], clicks / shown, rel_tol=1e-9)
        assert math.isclose(live["snips"]["value"], clicks / shown, rel_tol=1e-9)
        assert live["snips"]["ess"] == shown
        for label in ("none", "epsilon:epsilon=0.5"):
            for name in ("ips", "snips", "dr"):
                e = ope["policies"][label][name]
                assert e["low"] <= e["value"] <= e["high"] and 0 < e["ess"] <= shown
        # Greedy never shows what was clicked: worth nothing by IPS; more exploration is worth more.
        assert clicks > 0
        assert ope["policies"]["none"]["ips"]["value"] == 0.0
        assert ope["policies"]["epsilon:epsilon=0.5"]["ips"]["value"] > 0.0
        metrics = d.request("GET", "/metrics")[1]
        text = metrics if isinstance(metrics, str) else metrics.decode()
        assert f'rtrec_ope_snips{{policy="live"}} {clicks / shown}' in text
        assert 'rtrec_ope_window{what="lists"} 40.0' in text
        for policy in ("thompson", "softmax", "none"):
            rec = d.get(f"/v1/recommend?user_id=u1&k=5&policy={policy}")
            assert len(rec["items"]) == 5 and rec["policy"] == policy
            for it in rec["items"]:
                assert 0 < it["position_propensity"] <= it["propensity"] + 1e-12 <= 1 + 1e-12
        out = io.StringIO()
        Console(file=out, width=200).print(render(d.get("/v1/stats")))
        assert "policy value" in out.getvalue() and "none:" in out.getvalue()
