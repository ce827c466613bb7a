"""cache tables: the durable store behind the semantic cache's FAISS indexes.

Every cached response is one row. The FAISS index files are a derived, rebuildable view of
these rows (vector bytes included), so a lost or corrupt index loses nothing.
"""

from __future__ import annotations

from sqlalchemy import Column, Index, LargeBinary, String, Text
from sqlmodel import Field, SQLModel

__all__ = ["CacheEntry"]


class CacheEntry(SQLModel, table=True):
    """One cached chat completion, keyed by tenant scope, request partition and exact hash."""

    __tablename__ = "adaptive_cache_entries"
    __table_args__ = (
        Index("ix_adaptive_cache_entries_partition", "partition"),
        Index("ix_adaptive_cache_entries_exact", "exact_hash"),
        Index("ix_adaptive_cache_entries_expires", "expires_at"),
        Index("ix_adaptive_cache_entries_last_used", "last_used_at"),
        Index("ix_adaptive_cache_entries_created", "created_at"),
        Index("ix_adaptive_cache_entries_scope", "scope"),
    )

    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=255, description="tenant scope (project id); never crossed")
    partition: str = Field(max_length=64, description="sha256 of scope + everything that changes the answer")
    exact_hash: str = Field(max_length=64, description="sha256 of partition + normalised query text")
    query_text: str = Field(sa_column=Column(Text, nullable=False), description="the embedded query text")
    vector: bytes = Field(sa_column=Column(LargeBinary, nullable=False),
                          description="float32 unit vector of the full model; empty until one is computed")
    vector_model: str = Field(default="", sa_column=Column(String(120), nullable=False, server_default=""),
                              description="the embedder identity that computed `vector` ('': not recorded)")
    first_vector: bytes | None = Field(default=None, sa_column=Column(LargeBinary, nullable=True),
                                       description="float32 unit vector of the first look (static token table)")
    first_model: str = Field(default="", sa_column=Column(String(40), nullable=False, server_default=""),
                             description="the first-look table identity that computed `first_vector`")
    response_json: str = Field(sa_column=Column(Text, nullable=False), description="the chat completion, JSON")
    created_at: float = Field(description="unix seconds")
    last_used_at: float = Field(description="unix seconds; LRU eviction order")
    expires_at: float = Field(description="unix seconds; TTL")
