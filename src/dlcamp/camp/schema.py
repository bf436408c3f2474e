"""The camp database's shape: SQL migrations numbered by `PRAGMA user_version`, and `connect`.

Migration n (1-based) turns a version n-1 database into version n inside one transaction, so a
crash mid-upgrade leaves the old version. A database of a NEWER version than this code knows is
refused (SchemaError) rather than misread.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dlcamp.core.errors import DlcampError

DB_NAME = "camp.sqlite3"
BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: list[str] = [
    # 1: the tables. `seq` is a per-project change counter: every write bumps projects.seq
    # and stamps the rows it changed with the new value (GET changes?since=).
    """
    CREATE TABLE projects (
        id TEXT PRIMARY KEY, name TEXT NOT NULL, created REAL NOT NULL,
        seq INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE classes (
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL, name TEXT NOT NULL, name_zh TEXT NOT NULL DEFAULT '',
        PRIMARY KEY (project_id, idx));
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        sha256 TEXT NOT NULL, file_name TEXT NOT NULL,
        width INTEGER NOT NULL, height INTEGER NOT NULL,
        orig_width INTEGER NOT NULL, orig_height INTEGER NOT NULL,
        work_sha256 TEXT NOT NULL, thumb_sha256 TEXT NOT NULL,
        no_objects INTEGER NOT NULL DEFAULT 0,
        review TEXT NOT NULL DEFAULT 'todo' CHECK (review IN ('todo', 'done', 'needs_fix')),
        version INTEGER NOT NULL DEFAULT 1, seq INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL,
        UNIQUE (project_id, sha256));
    CREATE TABLE boxes (
        id TEXT PRIMARY KEY,
        image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        label INTEGER NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL, x2 REAL NOT NULL,
        y2 REAL NOT NULL, version INTEGER NOT NULL, deleted INTEGER NOT NULL DEFAULT 0,
        seq INTEGER NOT NULL DEFAULT 0, updated REAL NOT NULL);
    CREATE TABLE edits (
        edit_id TEXT PRIMARY KEY, project_id TEXT, kind TEXT NOT NULL,
        response TEXT NOT NULL, created REAL NOT NULL);
    """,
    # 2: indexes for the per-image box lists and changes?since=, and a key-value table for
    # server settings.
    """
    CREATE INDEX boxes_by_image ON boxes (image_id, deleted);
    CREATE INDEX images_by_seq ON images (project_id, seq);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: the fingerprint of the request an edit_id was first used for (edits.fingerprint), so
    # a replay of the id with another box or body is refused. Rows from before: NULL (any
    # request of the same kind and project is taken as the replay, as before).
    """
    ALTER TABLE edits ADD COLUMN request TEXT;
    """,
    # 4 (issue 16): training, proposals and scoring.
    # - boxes.proposed = 1: a box a trained model proposed (its `score`, the `run` that made it)
    #   and nobody has accepted yet; only accepted boxes (proposed = 0) count, train and export.
    # - projects.kind: 'team', or 'test' for the hidden test set the teams never see.
    # - images.tags: a JSON object of condition tags (background, lighting, distance...).
    # - submissions: a team's model or predictions scored on a test project.
    """
    ALTER TABLE boxes ADD COLUMN proposed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE boxes ADD COLUMN score REAL;
    ALTER TABLE boxes ADD COLUMN run TEXT;
    ALTER TABLE projects ADD COLUMN kind TEXT NOT NULL DEFAULT 'team'
        CHECK (kind IN ('team', 'test'));
    ALTER TABLE images ADD COLUMN tags TEXT NOT NULL DEFAULT '{}';
    CREATE TABLE submissions (
        id INTEGER PRIMARY KEY,
        project_id TEXT NOT NULL REFERENCES projects(id) ON DELETE CASCADE,
        test_id TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('run', 'checkpoint', 'predictions')),
        source TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'queued'
            CHECK (status IN ('queued', 'scoring', 'done', 'failed')),
        error TEXT, result TEXT,
        public_map REAL, private_map REAL, val_map REAL,
        selected INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL, scored REAL, edit_id TEXT);
    CREATE INDEX submissions_by_project ON submissions (project_id, created);
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaError(DlcampError):
    """The database cannot be used by this version of dlcamp."""


def connect(path: Path | str, readonly: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit): WAL, foreign keys on,
    synchronous=FULL, a busy timeout. readonly: opened with mode=ro and query_only, usable
    from any thread (one thread at a time). Raises SchemaError if the file is not SQLite."""
    path = Path(path).resolve()
    try:
        if readonly:
            conn = sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, isolation_level=None,
                                   check_same_thread=False)
        else:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        if not readonly:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        if readonly:
            conn.execute("PRAGMA query_only = ON")
    except sqlite3.DatabaseError as e:
        raise SchemaError(f"{path}: cannot open the camp database ({e})") from e
    return conn


def version(conn: sqlite3.Connection) -> int:
    """The database's schema version (0 for a new, empty file)."""
    return conn.execute("PRAGMA user_version").fetchone()[0]


def migrate(conn: sqlite3.Connection, target: int = SCHEMA_VERSION) -> int:
    """Apply the migrations the database lacks, each in its own transaction, up to `target`.
    Returns the version reached. Raises SchemaError for a database newer than this code."""
    current = version(conn)
    if current > SCHEMA_VERSION:
        raise SchemaError(
            f"the camp database is schema version {current}, but this dlcamp knows versions up "
            f"to {SCHEMA_VERSION}: it was written by a newer dlcamp; upgrade dlcamp to open it")
    for n in range(current + 1, target + 1):
        try:
            conn.execute("BEGIN IMMEDIATE")
            for statement in MIGRATIONS[n - 1].split(";"):  # no ';' inside SQL strings
                if statement.strip():
                    conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {n}")
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise SchemaError(f"upgrading the camp database to schema version {n} failed: "
                              f"{e}") from e
    return version(conn)
