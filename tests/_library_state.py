"""Reading a library's state from outside the process that writes it (index and interrupt tests)."""
import sqlite3
from pathlib import Path


def files_done(lib_dir: Path) -> int:
    """Files the indexer has committed; 0 while the database does not exist or is locked."""
    try:
        # read-only: polling must never create the database file before the indexer does
        con = sqlite3.connect(f"file:{lib_dir / 'library.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return con.execute("SELECT count(*) FROM files WHERE status='done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0
