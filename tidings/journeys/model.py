"""The journey definition: a pydantic union of node types keyed on ``type``.

A journey is a graph of nodes; each profile walks it on its own (its own position, timers and
branch), while the engine advances every profile standing on the same node together.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tidings.journeys.durations import Duration

NodeId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")]
Slug = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class PushContent(BaseModel):
    """Templates (Jinja2, sandboxed) over the profile: ``{{ profile.attributes.first_name }}``
    or the shortcut ``{{ first_name }}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str | None = None
    subtitle: str | None = None
    body: str | None = None
    image_url: str | None = None
    link: str | None = None
    data: dict[str, str] = Field(default_factory=dict)
    badge: int | None = Field(default=None, ge=0)
    sound: str | None = None
    category: str | None = None
    thread_id: str | None = None
    mutable_content: bool = False
    push_type: Literal["alert", "background"] = "alert"
    priority: Literal["high", "normal"] = "high"
    android_channel_id: str | None = None
    interruption_level: Literal["passive", "active", "time-sensitive", "critical"] | None = None


class NodeBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: NodeId
    name: str | None = None


class PushNode(NodeBase):
    """Send one push to every valid device of the profile for the app."""

    type: Literal["push"]
    app: Slug | None = Field(default=None, description="defaults to the journey's app")
    content: PushContent
    ttl: Duration | None = Field(
        default=None, description="after this long the push is recorded as expired, not sent"
    )
    next: NodeId | None = None


class DelayNode(NodeBase):
    """Wait a fixed time, then go on."""

    type: Literal["delay"]
    duration: Duration
    next: NodeId | None = None


class ExitNode(NodeBase):
    """The profile leaves the journey."""

    type: Literal["exit"]


Node = Annotated[PushNode | DelayNode | ExitNode, Field(discriminator="type")]


class JourneyDefinition(BaseModel):
    """A journey as designers write it (YAML or JSON)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Slug
    name: str
    app: Slug = Field(description="the app whose devices the journey's pushes go to")
    start: NodeId | None = Field(default=None, description="first node; default: the first listed")
    nodes: list[Node] = Field(min_length=1)

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


def definition_from_data(data: Any) -> JourneyDefinition:
    return JourneyDefinition.model_validate(data)
