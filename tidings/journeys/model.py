"""The journey definition: a pydantic union of node types keyed on ``type``.

A journey is a graph of nodes; each profile walks it on its own (its own position, timers and
branch), while the engine advances every profile standing on the same node together.
"""

from __future__ import annotations

from datetime import time as time_of_day
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from tidings.journeys.durations import Duration
from tidings.journeys.predicates import AttributeName, AttributePredicate, EventName, Predicate
from tidings.push.message import PushFields

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
LocaleTag = Annotated[str, Field(pattern=r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{2,8})*$")]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _known_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"{name!r} is not a time zone; use an IANA name such as Europe/Paris"
        ) from None
    return name


TimeZoneName = Annotated[str, AfterValidator(_known_zone)]
MIN_BEST_HOUR_WINDOW = timedelta(hours=1)
MAX_BEST_HOUR_WINDOW = timedelta(days=7)


class PushContent(PushFields):
    """A push as designers write it: one content model for APNs and FCM (see
    tidings.push.message for how each field reaches each provider).

    ``title``, ``subtitle``, ``body``, ``image_url``, ``link`` and the data values are
    templates (Jinja2, sandboxed) over the profile: ``{{ profile.attributes.first_name }}`` or
    the shortcut ``{{ first_name }}``. ``apns`` and ``android`` hold per-platform options and
    overrides (interruption level, Android channel, ...).
    """


class NodeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: NodeId
    name: str | None = None


class PushNode(NodeBase):
    """Send one push to every valid device of the profile for the app.

    ``locales`` holds variants of ``content`` by locale tag (``fr``, ``pt-BR``): a profile
    gets the variant of its exact locale, else of its language, else ``content``.
    """

    type: Literal["push"]
    app: Slug | None = Field(default=None, description="defaults to the journey's app")
    content: PushContent
    locales: dict[LocaleTag, PushContent] = Field(default_factory=dict)
    ttl: Duration | None = Field(
        default=None, description="after this long the push is recorded as expired, not sent"
    )
    retry_horizon: Duration | None = Field(
        default=None,
        description="how long transient provider failures (429, 5xx, lost connections, "
        "answers that never came) are retried before the push is recorded failed; default "
        "the deployment's TIDINGS_DELIVERY_RETRY_HORIZON_S (1 hour). The TTL ends retries "
        "sooner when it is shorter.",
    )
    next: NodeId | None = None

    @field_validator("content", mode="before")
    @classmethod
    def _upgrade_content(cls, value: Any) -> Any:
        return upgrade_legacy_content(value)

    @field_validator("locales", mode="before")
    @classmethod
    def _upgrade_locales(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {tag: upgrade_legacy_content(content) for tag, content in value.items()}
        return value


# Content keys of the first content model, now per-platform options. Definitions stored (and
# workflow inputs recorded) before the change still carry them: read them where they went.
LEGACY_CONTENT_KEYS = {
    "interruption_level": ("apns", "interruption_level"),
    "android_channel_id": ("android", "channel_id"),
}


def upgrade_legacy_content(value: Any) -> Any:
    if not isinstance(value, dict) or not LEGACY_CONTENT_KEYS.keys() & value.keys():
        return value
    upgraded = dict(value)
    for key, (section, field) in LEGACY_CONTENT_KEYS.items():
        if key not in upgraded:
            continue
        legacy = upgraded.pop(key)
        if legacy is not None:
            options = dict(upgraded.get(section) or {})
            options.setdefault(field, legacy)
            upgraded[section] = options
    return upgraded


class DelayNode(NodeBase):
    """Wait a fixed time, then go on."""

    type: Literal["delay"]
    duration: Duration
    next: NodeId | None = None


class WaitUntilNode(NodeBase):
    """Wait for a local time of day on an allowed weekday, in the profile's time zone (the
    journey's when the profile has none)."""

    type: Literal["wait_until"]
    time: time_of_day = Field(description="local time of day, e.g. 09:00 or 18:30:00")
    weekdays: list[Weekday] = Field(default_factory=lambda: list(WEEKDAYS), min_length=1)
    next: NodeId | None = None


class BestHourNode(NodeBase):
    """Wait for the profile's best local hour within ``within``: the hour of day (in its time
    zone, the journey's when it has none) at which it has opened pushes most often, recent
    opens weighing more; the app's best hour when the profile has too few opens, and
    ``default_hour`` when the app has too few too. Already inside that hour: go on at once.
    The rules are in tidings.journeys.best_hour."""

    type: Literal["best_hour"]
    within: Duration = Field(
        default=timedelta(hours=24),
        description="the window the hour is chosen in, from when the profile arrives "
        "(1h to 7d; 24h covers every hour of the day)",
    )
    default_hour: int = Field(
        default=10,
        ge=0,
        le=23,
        description="local hour when neither the profile nor the app "
        "has enough opens (the nearest hour in the window when it does not reach it)",
    )
    next: NodeId | None = None

    @field_validator("within")
    @classmethod
    def _window_in_bounds(cls, value: timedelta) -> timedelta:
        if not MIN_BEST_HOUR_WINDOW <= value <= MAX_BEST_HOUR_WINDOW:
            raise ValueError("must be between 1h and 7d")
        return value


class WaitForNode(NodeBase):
    """Wait for an interaction with an earlier push (``interaction`` + ``push``) or for a
    custom event (``event``), at most ``timeout``. Two exits: ``matched`` and ``timed_out``
    (a missing exit means the profile leaves the journey there)."""

    type: Literal["wait_for"]
    interaction: Literal["opened", "clicked"] | None = Field(
        default=None, description="opened is also satisfied by a click"
    )
    push: NodeId | None = Field(default=None, description="the earlier push node")
    event: EventName | None = Field(default=None, description="a custom event's name")
    timeout: Duration
    matched: NodeId | None = None
    timed_out: NodeId | None = None


class ConditionNode(NodeBase):
    """Branch on predicates over profile attributes and journey facts."""

    type: Literal["condition"]
    match: Literal["all", "any"] = "all"
    predicates: list[Predicate] = Field(min_length=1)
    then: NodeId | None = None
    otherwise: NodeId | None = None


class SplitBranch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    percent: float = Field(gt=0, le=100)
    next: NodeId | None = None


class ExperimentGoal(BaseModel):
    """What counts as a conversion of a profile that took a branch: an interaction with a
    push (``interaction`` opened or clicked, of push node ``node``, or of any push of the run
    when no node is named) or a custom event (``event``: its name)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    interaction: Literal["opened", "clicked"] | None = Field(
        default=None, description="opened is also satisfied by a click"
    )
    node: NodeId | None = Field(
        default=None, description="the push node; default: any push the run sent the profile"
    )
    event: EventName | None = Field(default=None, description="a custom event's name")


class Experiment(BaseModel):
    """A random split run as an experiment: each branch's conversion to ``goal`` within
    ``window`` of taking the branch, compared with the first branch (the control) by a
    two-proportion z-test. ``promote: auto`` sends every profile that reaches the split after
    a winner is clear down the winner; ``manual`` waits for ``tidings runs promote``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    goal: ExperimentGoal
    window: Duration = Field(description="how long after taking its branch a profile may convert")
    confidence: float = Field(
        default=0.95, ge=0.8, le=0.999, description="a winner needs p below 1 - confidence"
    )
    min_sample: int = Field(
        default=100, ge=1, le=10_000_000, description="profiles each branch needs before a verdict"
    )
    promote: Literal["manual", "auto"] = "manual"
    check_every: Duration = Field(
        default=timedelta(minutes=15),
        description="with promote: auto, how often the run looks for a clear winner",
    )


class RandomSplitNode(NodeBase):
    """Send each profile down one branch with the given percentages. The draw is a hash of
    journey, node and profile: the same profile always takes the same branch. With an
    ``experiment``, each profile's branch is recorded and the report says which branch wins;
    once a winner is promoted, profiles reaching the split take it."""

    type: Literal["random_split"]
    branches: list[SplitBranch] = Field(min_length=2)
    # left out of the stored definition when unset, so splits saved before it stay equal
    experiment: Experiment | None = Field(default=None, exclude_if=lambda value: value is None)


class ExitNode(NodeBase):
    """The profile leaves the journey."""

    type: Literal["exit"]


Node = Annotated[
    PushNode
    | DelayNode
    | WaitUntilNode
    | BestHourNode
    | WaitForNode
    | ConditionNode
    | RandomSplitNode
    | ExitNode,
    Field(discriminator="type"),
]
NODE_TYPES = (
    "push",
    "delay",
    "wait_until",
    "best_hour",
    "wait_for",
    "condition",
    "random_split",
    "exit",
)
# Nodes where a profile waits: a loop through none of them would spin without end. A
# best_hour wait may end at once (the profile is inside its best hour), so it is not one.
WAITING_TYPES = ("delay", "wait_until", "wait_for")


class QuietHours(BaseModel):
    """Local hours when no push is sent; a send falling inside waits for ``end``. The window
    may wrap midnight (start 21:00, end 08:00)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: time_of_day
    end: time_of_day


class Goal(BaseModel):
    """When this custom event arrives for a profile, the profile leaves the journey."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventName


class ReEntry(BaseModel):
    """May a profile enter a triggered journey again? ``never``; ``after_completion`` (once
    its previous entry has ended); ``after`` (``after`` has passed since its last entry)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["never", "after_completion", "after"] = "never"
    after: Duration | None = None


def _predicate_of(value: Any) -> Any:
    """A filter may be written as a command line writes it (``plan=pro``, ``age>=18``)."""
    if isinstance(value, str):
        from tidings.journeys.predicates import parse_where

        return parse_where(value)
    return value


class JourneyAudience(BaseModel):
    """Whom a run of the journey is for when its start names no audience: the profiles with
    a valid device in ``app`` (default: the journey's) whose attributes match every ``where``
    filter; or the profiles a saved ``segment`` selects (alone: put filters in the segment)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    app: Slug | None = None
    where: list[Annotated[AttributePredicate, BeforeValidator(_predicate_of)]] = Field(
        default_factory=list, description="filters such as plan=pro, age>=18, country~FR,BE"
    )
    # left out of the stored definition when unset: audiences saved before it stay equal
    segment: Slug | None = Field(
        default=None,
        description="a saved segment's name: its profiles are the audience",
        exclude_if=lambda value: value is None,
    )

    @model_validator(mode="after")
    def _segment_alone(self) -> JourneyAudience:
        if self.segment is not None and (self.app is not None or self.where):
            raise ValueError("a segment audience takes no app or where: put them in the segment")
        return self


class Trigger(BaseModel):
    """A custom event that starts the journey for the profile it names."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: EventName
    reentry: ReEntry = Field(default_factory=ReEntry)


class JourneyDefinition(BaseModel):
    """A journey as designers write it (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: str
    app: Slug = Field(description="the app whose devices the journey's pushes go to")
    start: NodeId | None = Field(default=None, description="first node; default: the first listed")
    nodes: list[Node] = Field(min_length=1)
    timezone: TimeZoneName = Field(
        default="UTC", description="for profiles without a time zone of their own"
    )
    quiet_hours: QuietHours | None = None
    frequency_cap: Literal["apply", "bypass"] = Field(
        default="apply",
        description="bypass: this journey's pushes ignore (but still count toward) the "
        "deployment's frequency cap",
    )
    goal: Goal | None = None
    trigger: Trigger | None = None
    # left out of the stored definition when unset: a journey saved before it existed stays
    # equal to itself (saving it again adds no version)
    audience: JourneyAudience | None = Field(
        default=None,
        description="whom a run is for when its start names no audience",
        exclude_if=lambda value: value is None,
    )
    # left out of the stored definition when empty, as ``audience``
    attributes: list[AttributeName] = Field(
        default_factory=list,
        description="profile attributes the journey's templates may read; validation warns "
        "about a template reading any other",
        exclude_if=lambda value: not value,
    )

    @property
    def start_node(self) -> str:
        return self.start or self.nodes[0].id

    def node(self, node_id: str) -> Node:
        for node in self.nodes:
            if node.id == node_id:
                return node
        raise KeyError(node_id)

    def app_of(self, node: PushNode) -> str:
        return node.app or self.app

    def condition_attributes(self) -> list[str]:
        """The top-level profile attributes condition nodes read: the only ones a cohort
        needs to carry."""
        names: set[str] = set()
        for node in self.nodes:
            if isinstance(node, ConditionNode):
                names.update(p.root for p in node.predicates if isinstance(p, AttributePredicate))
        return sorted(names)

    def listened_events(self) -> list[str]:
        """Custom events that change a running profile's course (goal, wait_for)."""
        names = {node.event for node in self.nodes if isinstance(node, WaitForNode) and node.event}
        if self.goal is not None:
            names.add(self.goal.event)
        return sorted(names)


def definition_from_data(data: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate(data)
