"""The typed values that parts exchange: what the learner reports, and what the daemon answers.

Light on purpose (no numpy, torch or rich): the daemon, the offline ``--home`` reader and
the dashboard all read these shapes. ``StatsResponse`` is ``/v1/stats``; a stopped daemon's
home gives the same shape with ``running`` false and only the parts its files hold.
"""

from __future__ import annotations

from typing import Required  # pydantic reads these (FastAPI response models) on 3.11

from typing_extensions import TypedDict

__all__ = [
    "CheckpointInfo",
    "DriftAlarm",
    "DriftState",
    "GcStats",
    "Health",
    "HealthStatus",
    "LearnerStats",
    "MinuteQuality",
    "Percentiles",
    "Progressive",
    "Quality",
    "ReplayStats",
    "StatsResponse",
    "StoredAlarm",
    "TextStatus",
    "UserItemStats",
]


class StoredAlarm(TypedDict):
    """A drift alarm as the event log keeps it."""

    ts: float  # event time of the example that raised it (epoch seconds)
    seq: int  # its sequence number
    detector: str  # "page_hinkley"
    stat: float  # the detector's statistic when it fired (above its threshold)


class DriftAlarm(StoredAlarm):
    """One drift alarm of a model's detector, as the learner raises it."""

    examples: int  # examples the model had learned by then
    wall_time: float  # when it was raised (epoch seconds)
    model: str  # the variant's name


class Percentiles(TypedDict):
    """Latency percentiles in seconds (``None`` before the first sample) and the sample count."""

    p50: float | None
    p90: float | None
    p99: float | None
    count: int


# ------------------------------------------------------------------------------ the learner


class MinuteQuality(TypedDict):
    minute: int  # epoch seconds at the start of the minute
    n: int
    auc: float | None
    logloss: float | None
    ctr: float


class Progressive(TypedDict):
    """Predict-then-learn quality over the recent window, overall and per minute."""

    n: int
    auc: float | None
    logloss: float | None
    ctr: float | None
    mean_prediction: float | None
    per_minute: list[MinuteQuality]


class ReplayMix(TypedDict):
    fresh: float
    replay: float


class ReplayStats(TypedDict):
    """The replay buffer's fill, the sampling strategy in force and the mix of rows learned."""

    size: int
    capacity: int
    positives: int
    strategy: str
    replay_ratio: float
    rows_drawn: int
    fresh_rows: int
    mix: ReplayMix


class LabelStats(TypedDict):
    """The labeller: impressions waiting for feedback, and the feature snapshots kept for them."""

    pending: int
    retained: int
    snapshot_bytes: int  # the store's arrays: features, predictions, times and keys
    index_bytes: int  # the native key indexes and deadline queues over them
    expired_early: int
    dropped: int
    window_s: float
    late_window_s: float


class UserItemStats(TypedDict):
    """The items remembered per user (consumed, with an example), summed over the learner's sets."""

    pairs: int
    bytes: int
    evicted: int  # pairs forgotten to keep users within max_per_user
    max_per_user: int  # learner.items_per_user (0: no bound)


class ServedSnapshots(TypedDict):
    held: int
    used: int


class DriftState(TypedDict):
    alarms: list[DriftAlarm]  # the last 20
    stat: float  # the detector's statistic now
    boost_left: int  # examples left in the adaptation after the last alarm


class HashingStats(TypedDict):
    bits: int
    collision_rate: float | None  # None before any feature was hashed


class TextFeatureStats(TypedDict):
    dim: int
    items_with_text: int


class RankerStats(TypedDict):
    trained: int  # positives the ranker learned from
    weights: dict[str, float]  # feature -> weight (rtrec.retrieve.FEATURES)


class LiveRanking(TypedDict):
    """Where the served ranking put items just before their users engaged with them (a sample)."""

    n: int
    hr_at_10: float | None
    ndcg_at_10: float | None


class RetrievalStats(TypedDict):
    """Candidate sources and the ranker (``rtrec.learn.stats.retrieval``)."""

    covisit_items: int
    covisit_users: int
    covisit_pairs: int
    covisit_bytes: int
    # Share of trained positives that the user's candidates held (the ranker's reach).
    candidate_recall: float | None
    live: LiveRanking
    rankers: dict[str, RankerStats]


class LearnerStats(TypedDict):
    """``OnlineLearner.stats()``: the served model's state."""

    model_version: int
    last_seq: int
    events_seen: int
    examples_seen: int
    pending_impressions: int
    labels: LabelStats
    served_snapshots: ServedSnapshots
    user_items: UserItemStats
    users: int
    items: int
    progressive: Progressive
    replay: ReplayStats
    drift: DriftState
    hashing: HashingStats
    text: TextFeatureStats
    retrieval: RetrievalStats
    # Feedback cleaning since the model started: events seen, users flagged as bots, and per rule
    # (bot, repeat, rate_user, rate_item, value) the events set aside; "sequence": learned, flagged;
    # "retracted_positives": bots' positives learned before their verdict, taken back from the counts and co-visitation.
    cleaning: dict[str, int]


# ------------------------------------------------------------------------------ the daemon


class Quality(TypedDict, total=False):
    """The latest progressive quality (finite values only)."""

    auc: float
    logloss: float
    ctr: float


class CheckpointInfo(TypedDict, total=False):
    seq: Required[int]
    path: Required[str]
    created_at: float | None
    model_version: int
    age_s: float
    seconds: float  # time to write it
    lock_seconds: float  # of which the learner was held (the copy, from the moment the lock was had)
    lock_wait_seconds: float  # before that, waiting for the learner's step to end (it learned on meanwhile)
    bytes: int
    bytes_per_learned_event: float | None


class TextStatus(TypedDict, total=False):
    """The text encoder's state; ``encoded``, ``cached`` and ``items_per_s`` after a refresh."""

    enabled: Required[bool]
    status: Required[str]  # starting, ready, encoding, disabled, "unavailable: ..." or "error: ..."
    device: str | None
    model: str | None
    queue: int
    encoded: int
    cached: int
    items_per_s: float


class IngestStats(TypedDict, total=False):
    rate: Required[float]
    accepted_total: Required[float]
    log_seq: Required[int]
    duplicates_total: float
    rejected_total: float
    commit_latency: Percentiles
    throttled_total: float
    stored: int  # events the log holds now (after forgets and retention)


class LearnStats(TypedDict, total=False):
    rate: Required[float]
    learned_seq: Required[int]
    lag_events: Required[int]
    learned_total: float
    lag_s: float
    batch_latency: Percentiles
    errors: float
    error: str | None
    quarantined_total: float


class FreshnessStats(TypedDict):
    learned: Percentiles  # from an events batch acknowledged to learned
    recommend: Percentiles  # from an events batch acknowledged to a recommend using it


class RecommendStats(TypedDict, total=False):
    rate: Required[float]
    requests_total: float
    explored_items_total: Required[float]
    latency: Required[Percentiles]
    policy: Required[str]
    epsilon: Required[float]
    temperature: Required[float]
    # Items served per candidate source since start (an item two sources proposed counts for both).
    sources: dict[str, float]


class HttpStats(TypedDict, total=False):
    open: Required[int]
    max_connections: Required[int]
    refused: int
    timed_out: int


class GcStats(TypedDict):
    """Garbage-collector pauses by generation (``rtrec.serve.gcwatch``)."""

    frozen: int  # objects start-up left in the permanent generation
    pauses: dict[str, Percentiles]  # "gen0", "gen1", "gen2": seconds
    max_s: dict[str, float]


class StatsResponse(TypedDict, total=False):
    """``/v1/stats``: everything ``rtrec inspect`` shows."""

    running: Required[bool]
    home: Required[str]
    time: Required[float]
    version: str
    uptime_s: float
    url: str | None
    pid: int
    ingest: IngestStats
    learn: LearnStats
    freshness: FreshnessStats
    recommend: RecommendStats
    model_version: int
    quality: Quality
    series: dict[str, list[float]]  # one value per 10 s: auc, logloss, ctr, ingest, learn
    model: LearnerStats
    drift_alarms: list[StoredAlarm]
    checkpoint: CheckpointInfo | None
    text: TextStatus
    catalog: dict[str, int]
    top_items: list[str]
    inbox: dict[str, int]
    http: HttpStats
    threads: dict[str, dict[str, int]]
    privacy: PrivacyStatus
    ope: LiveOpe
    gc: GcStats


class OpeEstimate(TypedDict):
    """One estimator's value of one policy (``rtrec.ope.estimators.Estimate``)."""

    value: float | None
    se: float | None
    low: float | None
    high: float | None
    ess: float
    n_requests: int
    n_shown: int
    max_weight: float
    clipped: int


class LiveOpe(TypedDict):
    """The live policy's value and the compared policies' on the recent window (``rtrec.ope.live``)."""

    window_requests: int
    pending_requests: int
    settle_s: float
    clip: float | None
    impressions: int
    observed_click_rate: float | None
    policies: dict[str, dict[str, OpeEstimate]]  # "live" first, then each compared policy


class PrivacyStatus(TypedDict):
    """What the daemon keeps about people (``[privacy]``) and what it has erased since start."""

    pseudonymize: bool
    retention_days: float | None
    inbox_keep_days: float | None
    forgotten: int  # users forgotten since start
    compaction_pending: bool  # a forget's deleted rows still in the database file's free pages
    retention: dict[str, float | None]  # runs, events and files dropped since start; last_at


class HealthStatus(TypedDict):
    """``/healthz`` to a caller without a valid token, while a token protects the daemon."""

    status: str  # "ok", or "degraded" while the learner is failing


class Health(HealthStatus):
    """``/healthz`` with a valid token (either scope), or when no token is configured."""

    version: str
    model_version: int
    uptime_s: float
    learner_error: str | None
