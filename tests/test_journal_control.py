"""The journal as the operator's commands open it: never created, state epochs, presence rows."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sidecar.journal import Journal, JournalError, JournalMissing


def test_opening_without_create_never_creates_a_file_or_directory(tmp_path: Path) -> None:
    path = tmp_path / "var" / "journal.sqlite3"
    with pytest.raises(JournalMissing) as missing:
        Journal(path, create=False)
    assert str(path.absolute()) in str(missing.value)
    assert not (tmp_path / "var").exists()


def test_opening_without_create_refuses_a_file_that_is_not_a_journal(tmp_path: Path) -> None:
    path = tmp_path / "other.sqlite3"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(JournalError, match="not a sidecar journal"):
        Journal(path, create=False)
    with sqlite3.connect(path) as conn:  # left as it was
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert tables == {"t"}


def test_an_existing_journal_opens_and_shares_state_with_its_epoch(tmp_path: Path) -> None:
    path = tmp_path / "journal.sqlite3"
    with Journal(path) as server:
        assert server.trading_epoch() == 0
        with Journal(path, create=False) as operator:
            assert operator.set_trading_state("halted", "why", "cli:me", 1) == 1
            assert operator.set_trading_state("active", "", "cli:me", 2) == 2
        assert server.trading_epoch() == 2
        assert server.trading_state() == ("active", "", "cli:me", 2)


def test_delete_control_and_the_reserved_trading_keys(tmp_path: Path) -> None:
    with Journal(tmp_path / "journal.sqlite3") as j:
        j.set_control("server", "{}")
        j.set_control("health", "{}")
        j.delete_control("server", "health", "absent")
        assert j.get_control("server") is None and j.get_control("health") is None
        with pytest.raises(ValueError, match="trading_"):
            j.delete_control("trading_state")
