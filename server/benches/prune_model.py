# A model of SQLite's prune (channels::prune_in_commit_order) before and
# after the read that picks channels, in Python's sqlite3 with the
# statements and the log's shape of the migrations: N channels with young
# entries only, M with old ones first. It prints the DELETEs run and how
# long the write lock was held. (sqlx adds a round trip to its worker
# thread per statement, so the real "before" holds the lock longer.)
#
#   python3 server/benches/prune_model.py 40000 1000
import sqlite3, time, os, sys
N, M = int(sys.argv[1]), int(sys.argv[2])
def setup(path):
    if os.path.exists(path): os.remove(path)
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript("""PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;
    CREATE TABLE channel_heads (channel TEXT PRIMARY KEY, seq INTEGER NOT NULL);
    CREATE TABLE channel_bodies (id INTEGER PRIMARY KEY, body TEXT NOT NULL, occurred_at INTEGER NOT NULL);
    CREATE TABLE channel_log (channel TEXT NOT NULL, seq INTEGER NOT NULL, body_id INTEGER NOT NULL, occurred_at INTEGER NOT NULL, PRIMARY KEY (channel, seq));""")
    c.execute("BEGIN")
    bid = 0
    for i in range(M):
        ch = f"private-record.grant.old-{i:08d}"
        for s in (1, 2):
            bid += 1; c.execute("INSERT INTO channel_bodies VALUES (?, '{}', 1000)", (bid,))
            c.execute("INSERT INTO channel_log VALUES (?, ?, ?, 1000)", (ch, s, bid))
        c.execute("INSERT INTO channel_heads VALUES (?, 2)", (ch,))
    for i in range(N):
        ch = f"private-record.grant.young-{i:08d}"
        for s in (1, 2, 3):
            bid += 1; c.execute("INSERT INTO channel_bodies VALUES (?, '{}', 5000)", (bid,))
            c.execute("INSERT INTO channel_log VALUES (?, ?, ?, 5000)", (ch, s, bid))
        c.execute("INSERT INTO channel_heads VALUES (?, 3)", (ch,))
    c.execute("COMMIT")
    return c
DELETE = ("DELETE FROM channel_log WHERE channel = ? AND seq < COALESCE((SELECT seq FROM channel_log "
          "WHERE channel = ? AND body_id >= ? ORDER BY seq LIMIT 1), 9223372036854775807)")
def prune(c, pick):
    bound = c.execute("SELECT COALESCE((SELECT id FROM channel_bodies WHERE occurred_at >= 2000 ORDER BY id LIMIT 1), (SELECT COALESCE(MAX(id),0)+1 FROM channel_bodies))").fetchone()[0]
    t0 = time.perf_counter()
    if pick:
        chans = [r[0] for r in c.execute("SELECT h.channel FROM channel_heads AS h WHERE (SELECT l.body_id FROM channel_log AS l WHERE l.channel = h.channel ORDER BY l.seq LIMIT 1) < ? ORDER BY h.channel", (bound,))]
    else:
        chans = [r[0] for r in c.execute("SELECT channel FROM channel_heads ORDER BY channel")]
    t_read = time.perf_counter() - t0
    locked = 0.0; n = 0; stmts = 0
    for i in range(0, len(chans), 256):
        t = time.perf_counter(); c.execute("BEGIN IMMEDIATE")
        for ch in chans[i:i+256]:
            n += c.execute(DELETE, (ch, ch, bound)).rowcount; stmts += 1
        c.execute("COMMIT"); locked += time.perf_counter() - t
    c.execute("DELETE FROM channel_bodies WHERE id < ?", (bound,))
    return n, stmts, t_read, locked
import tempfile
path = os.path.join(tempfile.mkdtemp(prefix="prune-model-"), "m.db")
for rnd in range(2):
    for pick in (False, True):
        c = setup(path)
        n, stmts, t_read, locked = prune(c, pick)
        print(f"{'after (channels picked)' if pick else 'before (every channel)'}: {N} young + {M} old channels: "
              f"{n} entries in {stmts} DELETEs; read {t_read*1000:.1f} ms, write lock held {locked*1000:.1f} ms")
        c.close()
import shutil
shutil.rmtree(os.path.dirname(path))
