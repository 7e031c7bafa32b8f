"""Per-app API keys: several per app, stored hashed, revocable."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, ForeignKey, Index, String
from sqlmodel import Field, SQLModel

from tidings.store.types import UTCDateTime, utcnow


class ApiKey(SQLModel, table=True):
    """An app's API key. Only its SHA-256 digest is stored: the key itself is shown once, when
    it is created. A key is random (256 bits), so a fast digest is as safe as a slow one and
    keeps every request's check cheap."""

    __tablename__ = "api_key"
    __table_args__ = (Index("ix_api_key_app", "app_id", "created_at"),)

    # the public part of the key (it appears in the key itself), used to find the row
    id: str = Field(sa_column=Column(String(32), primary_key=True))
    app_id: str = Field(
        sa_column=Column(String(64), ForeignKey("app.id", ondelete="CASCADE"), nullable=False)
    )
    name: str = Field(sa_column=Column(String(200), nullable=False))
    secret_digest: str = Field(sa_column=Column(String(64), nullable=False))
    created_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime()))
