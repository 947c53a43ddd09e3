"""The bot rule: users whose clicks no person would make, from their click rate and what they were shown."""

from __future__ import annotations

from typing import Any

import numpy as np

from rtrec.clean.memory import RecentItems, Rows, group_ends, group_starts, segmented_cumsum
from rtrec.config import CleanConfig

__all__ = ["SHOWN_ITEMS", "Bots"]

# Impressions remembered per user. A click on an item shown earlier than that many impressions
# ago counts as "not shown"; the share threshold leaves room for the few that are.
SHOWN_ITEMS = 32


class Bots:
    """Per user: impressions, clicks, clicks judged for "shown", and of those the ones on items
    not shown (4 int32, 16 bytes); a flag (1 byte); the last ``SHOWN_ITEMS`` impressions
    (item hash and second, 264 bytes, once the stream logs impressions).

    A user is flagged at the first row where, counting every earlier row of theirs and that
    one, the click rate reaches ``bot_click_rate`` after ``bot_min_impressions`` impressions,
    or the share of clicks on items not shown reaches ``bot_unshown_share`` after
    ``bot_min_clicks`` such clicks. A click is judged for "shown" only once the stream has
    logged an impression (of anyone) before it: a log without impressions, or the clicks
    before impressions were logged, say nothing about what a user was shown.
    """

    def __init__(self, cfg: CleanConfig) -> None:
        self.cfg = cfg
        self.tally = np.zeros((0, 4), np.int32)
        self.flagged = np.zeros(0, bool)
        self.reasons: dict[int, str] = {}
        self.shown = RecentItems(SHOWN_ITEMS, timed=True)
        self.logs_impressions = False

    def reserve(self, n: int) -> None:
        if len(self.tally) < n:
            tally = np.zeros((n, 4), np.int32)
            tally[: len(self.tally)] = self.tally
            flagged = np.zeros(n, bool)
            flagged[: len(self.flagged)] = self.flagged
            self.tally, self.flagged = tally, flagged
        if self.logs_impressions:
            self.shown.reserve(n)

    def forget(self, user: int) -> None:
        self.tally[user] = 0
        self.flagged[user] = False
        self.reasons.pop(user, None)
        if self.logs_impressions:
            self.shown.clear(user)

    def judge(
        self, rows: Rows, impression: np.ndarray, click: np.ndarray, counted: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rows of users flagged as bots at or before them, and the users flagged now.

        ``counted`` marks the rows that are evidence (repeats are not).
        """
        cfg = self.cfg
        n = len(rows.users)
        imp, clk = impression & counted, click & counted
        if self.logs_impressions:
            judged = clk
        else:
            first = int(np.argmax(impression)) if impression.any() else n
            judged = clk & (np.arange(n) > first)
            if first < n:
                self.logs_impressions = True
                self.shown.reserve(len(self.tally))
        if cfg.bot_min_clicks == 0:
            judged = np.zeros(n, bool)
        unshown = np.zeros(n, bool)
        if self.logs_impressions and (judged.any() or imp.any()):
            unshown = judged & ~self.shown.match_then_add(rows, judged, imp, cfg.bot_shown_window_s)
        order = rows.by_user
        u = rows.users[order]
        starts = group_starts(u)
        x = np.stack([imp[order], clk[order], judged[order], unshown[order]], axis=1).astype(np.int64)
        cum = segmented_cumsum(x, starts) + self.tally[u]
        cond = np.zeros(n, bool)
        if cfg.bot_min_impressions > 0:
            cond |= (cum[:, 0] >= cfg.bot_min_impressions) & (cum[:, 1] >= cfg.bot_click_rate * cum[:, 0])
        if cfg.bot_min_clicks > 0:
            cond |= (cum[:, 2] >= cfg.bot_min_clicks) & (cum[:, 3] >= cfg.bot_unshown_share * cum[:, 2])
        before = self.flagged[u]
        bot = before
        # Each newly flagged user's first such row.
        hits = np.flatnonzero(cond & ~before)
        trig = hits
        if len(hits):
            trig = hits[np.unique(starts[hits], return_index=True)[1]]
            first_at = np.full(n, n)
            first_at[starts[trig]] = trig
            bot = before | (np.arange(n) >= first_at[starts])
            for p in trig.tolist():
                self.reasons[int(u[p])] = self._reason(cum[p])
            self.flagged[u[trig]] = True
        ends = group_ends(u)
        self.tally[u[ends]] = np.minimum(cum[ends], 2**31 - 1)
        out = np.empty(n, bool)
        out[order] = bot
        return out, u[trig]

    def _reason(self, c: np.ndarray) -> str:
        imps, clicks, judged, unshown = (int(v) for v in c)
        cfg = self.cfg
        if cfg.bot_min_impressions > 0 and imps >= cfg.bot_min_impressions and clicks >= cfg.bot_click_rate * imps:
            return f"bot: click rate {clicks / imps:.2f} over {imps} impressions"
        return f"bot: {unshown / judged:.0%} of {judged} clicks on items not shown to this user"

    def state(self, n: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "tally": self.tally[:n].copy(),
            "flagged": self.flagged[:n].copy(),
            "reasons": dict(self.reasons),
            "logs_impressions": self.logs_impressions,
        }
        if self.logs_impressions:
            out["shown"] = self.shown.state(n)
        return out

    def load(self, s: dict[str, Any]) -> None:
        self.tally = np.array(s["tally"], np.int32).reshape(-1, 4)
        self.flagged = np.array(s["flagged"], bool)
        self.reasons = {int(k): str(v) for k, v in s["reasons"].items()}
        self.logs_impressions = bool(s["logs_impressions"])
        self.shown = RecentItems(SHOWN_ITEMS, timed=True)
        if self.logs_impressions:
            self.shown.load(s["shown"])
