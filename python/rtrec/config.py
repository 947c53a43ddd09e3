"""Configuration: embedded defaults, a TOML file, environment variables and flags.

Precedence, highest first: command-line flag, environment variable (``RTREC_HOME``,
``RTREC_CONFIG``, ``RTREC_TOKEN``, ``RTREC_ID_KEY``), TOML file, embedded defaults. A config is validated
once into a frozen :class:`Config` by pydantic; unknown keys, wrongly typed values and
values out of range are errors that name the key. Numbers coerce (an integer where a float
is expected), lists become tuples and tables sections; text never becomes a number or a flag.

>>> cfg = load_config(overrides={"learner": {"batch_size": 256}})
>>> cfg.learner.batch_size
256
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError

from rtrec.errors import ConfigError

EVENT_TYPES = ("impression", "click", "favorite", "add_to_cart", "purchase", "rating", "dismiss", "skip")

# Value types: strict (no text to number or flag), with the ranges the code relies on.
Int = Annotated[int, Strict()]
Float = Annotated[float, Strict()]  # an integer is accepted and becomes a float
Bool = Annotated[bool, Strict()]
Str = Annotated[str, Strict()]
Count = Annotated[int, Strict(), Field(ge=1)]  # at least 1
Seconds = Annotated[float, Strict(), Field(ge=0.0)]
Share = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Strict(), Field(gt=0.0)]
NonNegative = Annotated[float, Strict(), Field(ge=0.0)]

SECTION = ConfigDict(extra="forbid")  # pydantic reads this off each section


def _policy(text: str) -> str:
    from rtrec.errors import InvalidInputError
    from rtrec.ope.policies import parse_policy

    try:
        return parse_policy(text).label
    except InvalidInputError as exc:
        raise ValueError(str(exc)) from None


PolicyText = Annotated[str, Strict(), AfterValidator(_policy)]  # "none", "epsilon=0.1", "softmax:temperature=0.05"


@dataclass(frozen=True)
class FeaturesConfig:
    """Hashed features fed to the CTR model (see ``rtrec.features``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    bits: Annotated[int, Strict(), Field(ge=1, le=32)] = 20
    seed: Int = 0
    # Namespaces hashed for every training row. ``user`` and ``item`` come from the event,
    # ``category`` and ``tags`` from the catalog, ``hour`` and ``weekday`` from the event
    # time, anything else from the event's ``context`` object.
    namespaces: tuple[Str, ...] = ("user", "item", "category", "tags", "hour", "weekday", "device")
    crosses: tuple[tuple[Str, Str], ...] = (("user", "category"), ("user", "tags"))


@dataclass(frozen=True)
class EventsConfig:
    """What the event log accepts (see ``rtrec.events.validate``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    # An event may be at most this far in the future of the receiving clock, in seconds.
    max_future_s: Seconds = 86_400.0
    # ... and no older than this (ISO 8601; without an offset, UTC).
    oldest: Str = "1970-01-01T00:00:00+00:00"
    # Identifiers (event, user, item, request) have at most this many characters.
    max_id_chars: Count = 512
    # ``context`` and item ``attrs``: nesting levels, and characters of their JSON text.
    max_depth: Count = 16
    max_json_chars: Count = 65_536
    # DuckDB's memory limit for the event log (its cache otherwise grows towards 80% of RAM).
    duckdb_memory_limit: Str = "1GB"


@dataclass(frozen=True)
class LabelsConfig:
    """How feedback events become training labels (see ``rtrec.events.labels``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    positive: dict[Str, Float] = field(
        default_factory=lambda: {"click": 1.0, "favorite": 2.0, "add_to_cart": 2.0, "purchase": 4.0}
    )
    negative: dict[Str, Float] = field(default_factory=lambda: {"dismiss": 1.0, "skip": 0.5})
    rating_threshold: Float = 4.0
    rating_weight: Float = 1.0
    # How long an impression waits for feedback before it is learned as a negative, and how
    # much longer its features are kept for a late positive (bench/delayed_feedback.py).
    impression_window_s: Seconds = 300.0
    late_window_s: Seconds = 1500.0
    # At most this many impressions are held with their features (about 830 bytes each):
    # past it the oldest kept one is dropped, or the oldest pending one learned as a negative early.
    max_snapshots: Count = 2_000_000
    # The event-time watermark never runs more than this ahead of the learner's clock.
    watermark_lead_s: Seconds = 10.0


@dataclass(frozen=True)
class LearnerConfig:
    """The online CTR learner (see ``rtrec.learn``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    batch_size: Count = 1024
    # Adagrad step sizes: dense layers, and the hashed embedding tables (sparse rows).
    lr: Positive = 0.02
    sparse_lr: Positive = 0.1
    # Step size of the linear model (per-example online logistic regression; its logit feeds the CTR model).
    linear_lr: NonNegative = 0.5
    # Served logit = (1 - linear_blend) * CTR model + linear_blend * linear model.
    linear_blend: Share = 0.5
    embedding_dim: Count = 16
    mlp_hidden: tuple[Count, ...] = (32,)
    weight_decay: NonNegative = 0.0
    replay_capacity: Count = 100_000
    # Items remembered per user (consumed ones are never recommended again; none is sampled as a
    # training negative); past it the least recently touched is forgotten. 0 keeps all (memory grows).
    items_per_user: Annotated[int, Strict(), Field(ge=0)] = 5_000
    # Replay rows mixed into each update, per fresh row. Off: every steady-state mix cost AUC on
    # MovieLens and the simulator (bench/RESULTS.md); after a drift alarm drift_replay_ratio applies.
    replay_ratio: NonNegative = 0.0
    replay_strategy: Literal["uniform", "recency", "balanced"] = "recency"
    replay_half_life_events: Positive = 20_000.0
    # Half-life of the per-user and per-item popularity and CTR counters, in seconds of event time.
    counter_half_life_s: Positive = 7 * 24 * 3600.0
    # Half-life of the per-user "recent CTR" counter (the current session's mood), in seconds.
    recent_half_life_s: Positive = 3600.0
    # Page-Hinkley on the normalised entropy (log loss / entropy of the click rate) of each 512
    # examples; the first 10 observations only set its mean (bench/drift.py).
    drift_delta: NonNegative = 0.01
    drift_threshold: Positive = 0.3
    drift_alpha: Share = 0.95
    drift_boost: Positive = 1.0
    drift_boost_events: Annotated[int, Strict(), Field(ge=0)] = 5_000
    # Replay rows per fresh row while a drift alarm's adaptation lasts (newest rows first).
    drift_replay_ratio: NonNegative = 0.5
    # On an alarm, Adagrad's squared-gradient history is multiplied by this (0, 1]: steps grow again.
    drift_forget: Annotated[float, Strict(), Field(gt=0.0, le=1.0)] = 1.0
    # torch intra-op threads for learning (process-wide; sparse updates run fastest on one). 0 = torch's default.
    threads: Annotated[int, Strict(), Field(ge=0)] = 1
    seed: Int = 0


@dataclass(frozen=True)
class TextConfig:
    """Language-model item text features (see ``rtrec.text``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    enabled: Bool = True
    # A model name (``all-MiniLM-L6-v2``, ``gpt2``) or a local folder with transformers weights.
    model: Str = "all-MiniLM-L6-v2"
    template: Str = "{title}. {category}. {tags}. {description}"
    max_length: Count = 64
    batch_size: Count = 64
    pooling: Literal["mean", "last"] = "mean"
    device: Str = "auto"
    # ``auto``: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU.
    dtype: Literal["auto", "float32", "fp32", "bfloat16", "bf16", "float16", "fp16"] = "auto"
    threads: Annotated[int, Strict(), Field(ge=0)] = 0
    dim: Count = 32
    item_features: Bool = True
    user_vector: Bool = True
    # Off by default: on MovieLens and the simulator it cost AUC (bench/RESULTS.md).
    distill: Bool = False
    user_half_life_events: Positive = 50.0
    distill_weight: NonNegative = 1.0
    distill_decay_events: Positive = 5.0


@dataclass(frozen=True)
class ServeConfig:
    """The daemon and its HTTP API (see ``rtrec.serve``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    host: Str = "127.0.0.1"
    port: Annotated[int, Strict(), Field(ge=0, le=65535)] = 8080
    token: Str | None = None
    # A second bearer token for GET and HEAD routes only (recommend, similar, stats, metrics):
    # for dashboards and readers that must not post events. Needs ``token``.
    read_token: Str | None = None
    exploration: Literal["none", "epsilon", "softmax", "thompson"] = "epsilon"
    epsilon: Share = 0.05
    # softmax: the temperature; thompson: the score noise of an item with no examples yet
    # (it shrinks as 1 / sqrt(1 + the item's examples)).
    temperature: Positive = 0.1
    max_body_bytes: Count = 16 * 1024 * 1024
    max_batch: Count = 10_000
    checkpoint_every_s: Positive = 30.0
    inbox_poll_s: Positive = 1.0
    # A connection must deliver a whole request within this many seconds of opening (or of
    # its previous answer), or it is closed; past max_connections new ones are closed at once.
    request_timeout_s: Positive = 30.0
    max_connections: Count = 512
    # Backpressure: a batch gets HTTP 429 when learning it and what waits would take longer than
    # this many seconds at the learner's current rate, or more than max_lag_events would wait.
    max_lag_s: Positive = 0.5
    max_lag_events: Count = 100_000


@dataclass(frozen=True)
class RetrieveConfig:
    """Candidate retrieval and the ranker over the candidates (see ``rtrec.retrieve``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    # Candidates each source contributes before merging; the merged set is ranked.
    per_source: Count = 100
    # Item-to-item co-visitation: neighbours served per item (as many again kept in reserve), history items
    # paired with each engagement, a pair's half-life in event-time s (0: none; see RESULTS.md, Top-K).
    max_neighbours: Count = 32
    history: Count = 20
    covisit_half_life_s: Seconds = 30 * 86400.0
    # Trending: half-life of the decayed popularity, overall and within categories.
    trending_half_life_s: Positive = 86400.0
    # Fresh items: at most this many under-exposed items join the candidates (the newest
    # first, then a random draw), an item counting as fresh below ``fresh_below`` engagements.
    fresh: Annotated[int, Strict(), Field(ge=0)] = 20
    fresh_below: Count = 5
    # Of every top-10, at least this many items with fewer than replay.cold_threshold positives
    # (the best such candidates by the ranker's score), when the candidates hold any.
    cold_slots: Annotated[int, Strict(), Field(ge=0, le=10)] = 0
    # Content: above this many items with text, an IVF index (approximate) replaces exact search.
    ann_above: Count = 200_000
    ann_probe: Count = 16
    # The ranker: a softmax over each trained positive and ``negatives`` of its candidates,
    # trained on this share of positive events (each costs one retrieval and CTR scoring).
    negatives: Count = 32
    train_share: Share = 0.05
    lr: Positive = 0.05


@dataclass(frozen=True)
class PrivacyConfig:
    """What rtrec keeps about people, and for how long (see ``rtrec.privacy``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    # Replace user ids at ingest by a keyed hash (HMAC-SHA256) so the raw id never reaches
    # disk; the API still takes raw ids. The key comes from RTREC_ID_KEY or id_key.
    pseudonymize: Bool = False
    id_key: Str | None = None
    # Drop events older than this many days from the log (once learned; the model keeps what
    # it learned), checking every retention_every_s. None keeps them.
    retention_days: Positive | None = None
    retention_every_s: Positive = 3600.0
    # Keep processed inbox files (inbox/done, inbox/rejected) this many days; 0 deletes them
    # once processed, None keeps them.
    inbox_keep_days: NonNegative | None = None
    # Seconds after a forget (and at shutdown) until the database file is rewritten, leaving no deleted bytes.
    compact_after_s: Seconds = 60.0


@dataclass(frozen=True)
class CleanConfig:
    """Feedback cleaning between the event log and the learner (see ``rtrec.clean``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    enabled: Bool = True
    # Rate limits over 60 s of event time, impressions not counted: events per user, and per item (0 turns
    # either off). 600 leaves MovieLens's bulk rating sessions (at most 392 in a minute) untouched.
    user_max_per_min: Annotated[int, Strict(), Field(ge=0)] = 600
    item_max_per_min: Annotated[int, Strict(), Field(ge=0)] = 0
    # Copies of an event (same user, item, type and value; for impressions, request) within this many
    # seconds of the previous one count once (0: off).
    repeat_window_s: Seconds = 2.0
    # Bots: a click rate (clicks per impression) at or above bot_click_rate after bot_min_impressions
    # impressions, or at least bot_unshown_share of bot_min_clicks or more clicks on items not shown
    # to the user in the bot_shown_window_s before (0 turns a test off). From the event that tips
    # it on, every event of the user is set aside.
    bot_click_rate: Share = 0.9
    bot_min_impressions: Annotated[int, Strict(), Field(ge=0)] = 20
    bot_unshown_share: Share = 0.8
    bot_min_clicks: Annotated[int, Strict(), Field(ge=0)] = 20
    bot_shown_window_s: Seconds = 3600.0
    # Values: once value_min_count values of a type are kept (0: off), one more than value_mad_k MADs
    # from their median is set aside; the MAD counts as at least value_mad_floor times the median
    # absolute value.
    value_min_count: Annotated[int, Strict(), Field(ge=0)] = 50
    value_mad_k: Positive = 20.0
    value_mad_floor: NonNegative = 0.1


@dataclass(frozen=True)
class ReplayConfig:
    """``rtrec replay`` evaluation (see ``rtrec.replay``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    # Fraction of positive events on which full-catalog HR@10 / NDCG@10 are measured.
    ranking_sample: Share = 0.01
    windows: Count = 20
    static_fraction: Annotated[float, Strict(), Field(gt=0.0, lt=1.0)] = 0.2
    cold_threshold: Annotated[int, Strict(), Field(ge=0)] = 5


@dataclass(frozen=True)
class OpeConfig:
    """Live off-policy estimates on the daemon's recent requests (see ``rtrec.ope.live``)."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    live_policies: tuple[PolicyText, ...] = ("none",)  # compared with the live policy on its own log
    window_requests: Count = 5_000  # settled requests the live estimates are computed on
    settle_s: Seconds | None = None  # a list settles this long after serving (None: labels.impression_window_s)
    clip: Positive | None = None  # cap on each importance weight (None: no cap)


@dataclass(frozen=True)
class Config:
    """The whole validated configuration. Build one with :func:`load_config`."""

    __pydantic_config__: ClassVar[ConfigDict] = SECTION

    home: Path = field(default_factory=lambda: Path.home() / ".rtrec")
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    text: TextConfig = field(default_factory=TextConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    replay: ReplayConfig = field(default_factory=ReplayConfig)
    retrieve: RetrieveConfig = field(default_factory=RetrieveConfig)
    clean: CleanConfig = field(default_factory=CleanConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)
    ope: OpeConfig = field(default_factory=OpeConfig)

    @property
    def db_path(self) -> Path:
        return self.home / "rtrec.duckdb"

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["home"] = str(self.home)
        return out


def default_home() -> Path:
    env = os.environ.get("RTREC_HOME")
    return Path(env).expanduser() if env else Path.home() / ".rtrec"


def load_config(
    path: str | Path | None = None,
    *,
    home: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> Config:
    """Build the configuration from defaults, a TOML file, the environment and overrides.

    ``path`` falls back to ``$RTREC_CONFIG``, then to ``<home>/config.toml`` when it exists.
    ``overrides`` (a nested mapping, as flags produce) wins over everything else.
    """
    data: dict[str, Any] = {}
    home = home if home is not None else (overrides or {}).get("home")  # an override, as a flag would
    home_path = Path(home).expanduser() if home is not None else default_home()
    cfg_path = Path(path) if path is not None else None
    if cfg_path is None and os.environ.get("RTREC_CONFIG"):
        cfg_path = Path(os.environ["RTREC_CONFIG"])
    if cfg_path is None and (home_path / "config.toml").is_file():
        cfg_path = home_path / "config.toml"
    if cfg_path is not None:
        data = read_toml(cfg_path)
    if "home" in data and home is None and not os.environ.get("RTREC_HOME"):
        home_path = Path(str(data["home"])).expanduser()
    data.pop("home", None)
    if os.environ.get("RTREC_TOKEN"):
        _merge(data, {"serve": {"token": os.environ["RTREC_TOKEN"]}})
    if os.environ.get("RTREC_ID_KEY"):
        _merge(data, {"privacy": {"id_key": os.environ["RTREC_ID_KEY"]}})
    if os.environ.get("RTREC_READ_TOKEN"):
        _merge(data, {"serve": {"read_token": os.environ["RTREC_READ_TOKEN"]}})
    if overrides:
        _merge(data, overrides)
    cfg = dataclasses.replace(_build(data), home=home_path)
    validate(cfg)
    return cfg


def read_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist", hint="pass --config with an existing TOML file")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


_SECTIONS = TypeAdapter(Config)

# Keys that were renamed: the error says what to write instead.
RENAMED = {"learner.wide_lr": "learner.linear_lr", "learner.wide_blend": "learner.linear_blend"}

FRIENDLY = {
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_type": "must be a number",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "dict_type": "must be a table",
    "dataclass_type": "must be a table",
}


def _build(data: dict[str, Any]) -> Config:
    """Validate and coerce the merged settings into a :class:`Config` (pydantic), or raise :class:`ConfigError`."""
    try:
        return _SECTIONS.validate_python(data)
    except ValidationError as exc:
        raise _config_error(exc.errors()[0]) from None


def _config_error(err: Any) -> ConfigError:
    """One pydantic error as a ``ConfigError`` that names the key and the reason."""
    loc = [str(p) for p in err["loc"]]
    if err["type"] == "unexpected_keyword_argument":
        section = f"[{'.'.join(loc[:-1])}]" if len(loc) > 1 else "the top level"
        cls: Any = Config
        for part in loc[:-1]:
            cls = typing.get_type_hints(cls)[part]
        known = ", ".join(sorted(f.name for f in dataclasses.fields(cls)))
        hint = f"renamed to {RENAMED[key]}" if (key := ".".join(loc)) in RENAMED else f"known keys: {known}"
        return ConfigError(f"unknown config key {loc[-1]!r} in {section}", hint=hint)
    key = ".".join(loc)
    reason = FRIENDLY.get(err["type"]) or err["msg"][:1].lower() + err["msg"][1:]
    reason = reason.replace("input should be", "must be")
    return ConfigError(f"config key {key} {reason}, got {err.get('input')!r}")


def validate(cfg: Config) -> None:
    """Check the rules that span keys (each key's own type and range pydantic has checked)."""
    f = cfg.features
    for a, b in f.crosses:
        for ns in (a, b):
            if ns not in f.namespaces:
                raise ConfigError(f"config key features.crosses names {ns!r}, which is not in features.namespaces")
    for key in (*cfg.labels.positive, *cfg.labels.negative):
        if key not in EVENT_TYPES:
            raise ConfigError(
                f"config key labels names unknown event type {key!r}", hint=f"known: {', '.join(EVENT_TYPES)}"
            )
    overlap = set(cfg.labels.positive) & set(cfg.labels.negative)
    if overlap:
        raise ConfigError(f"event type {sorted(overlap)[0]!r} is both positive and negative in [labels]")
    try:
        datetime.fromisoformat(cfg.events.oldest)
    except ValueError:
        raise ConfigError(
            f"config key events.oldest must be an ISO 8601 time, got {cfg.events.oldest!r}",
            hint="e.g. 2000-01-01T00:00:00Z",
        ) from None
    pc = cfg.privacy
    if pc.pseudonymize and not pc.id_key:
        raise ConfigError(
            "config key privacy.pseudonymize is on without a key",
            hint="set RTREC_ID_KEY (or privacy.id_key) to a secret of at least 16 characters, and keep it",
        )
    if pc.id_key is not None and len(pc.id_key) < 16:
        raise ConfigError("config key privacy.id_key must be at least 16 characters long")
    sc = cfg.serve
    if sc.read_token and not sc.token:
        raise ConfigError(
            "config key serve.read_token is set without serve.token: the write routes would be open to anyone",
            hint="set serve.token (or RTREC_TOKEN) too, or drop serve.read_token",
        )
    if sc.read_token and sc.read_token == sc.token:
        raise ConfigError(
            "config key serve.read_token equals serve.token: whoever holds it could write, not only read",
            hint="pick a different read-only token",
        )
