//! The Lua scripts both Redis transports run ([`super::redis`], [`super::redis_cluster`]): appending a
//! trigger to its path's history with its publish, and reading (or starting) a path's position; and how
//! they run on a server that does not have them cached.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionLike;
use redis::{Cmd, ErrorKind, FromRedisValue, RedisError, RedisResult};

use super::redis::{PathKeys, millis};
use crate::history::{Cursor, HistoryLimits, new_epoch};

/// How long a path's position is kept without triggers.
const META_TTL: Duration = Duration::from_secs(24 * 3600);

/// Append a trigger to its path's history and publish it, atomically. KEYS: the position hash, the
/// stream. ARGV: an epoch for a new history, entries kept (0: none), the trigger, the stream's expiry
/// (ms), the channel, the position's expiry (ms). Returns `{epoch, offset}`. `PUBLISH!` stands for the
/// publishing command ([`append_script`]).
const APPEND: &str = r#"
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
local o = redis.call('HINCRBY', KEYS[1], 'o', 1)
local e = redis.call('HGET', KEYS[1], 'e')
redis.call('PEXPIRE', KEYS[1], ARGV[6])
if tonumber(ARGV[2]) > 0 then
  local now = redis.call('TIME')
  local ms = now[1] * 1000 + math.floor(now[2] / 1000)
  redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], o .. '-0', 'd', ARGV[3], 't', ms)
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
end
redis.call('PUBLISH!', ARGV[5], o .. ' ' .. e .. ' ' .. ARGV[3])
return {e, o}
"#;

/// [`APPEND`] publishing with `publish`: `PUBLISH` on a standalone Redis, `SPUBLISH` on a cluster.
pub(super) fn append_script(publish: &str) -> Lua {
    Lua::new(APPEND.replace("PUBLISH!", publish))
}

/// A Lua script, run by its hash (`EVALSHA`), or by its text where the server does not have it: a Redis
/// restarted or flushed since, or a replica just promoted (a server's script cache is its own, never
/// replicated). Running it by its text caches it there.
pub(super) struct Lua {
    code: String,
    hash: String,
}

impl Lua {
    fn new(code: String) -> Lua {
        let hash = redis::Script::new(&code).get_hash().to_owned();
        Lua { code, hash }
    }

    /// `EVALSHA` (`cached`) or `EVAL` of the script, to which its keys and arguments are added.
    pub fn command(&self, cached: bool) -> Cmd {
        let mut cmd = if cached {
            redis::cmd("EVALSHA")
        } else {
            redis::cmd("EVAL")
        };
        cmd.arg(if cached { &self.hash } else { &self.code });
        cmd
    }

    /// Run it with `args` (the number of keys, the keys, the arguments): by its hash, and by its text
    /// on a server that does not have it.
    pub async fn run<T: FromRedisValue>(
        &self,
        connection: &mut (impl ConnectionLike + Send),
        args: impl Fn(&mut Cmd),
    ) -> RedisResult<T> {
        let mut cmd = self.command(true);
        args(&mut cmd);
        match cmd.query_async(connection).await {
            Err(e) if e.kind() == ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                let mut cmd = self.command(false);
                args(&mut cmd);
                cmd.query_async(connection).await
            }
            result => result,
        }
    }

    /// Cache it on the server behind `connection`.
    pub async fn load(&self, connection: &mut (impl ConnectionLike + Send)) -> RedisResult<()> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(&self.code)
            .query_async::<String>(connection)
            .await
            .map(drop)
    }
}

/// The position of a path, starting its history if it has none. KEYS: the position hash. ARGV: an
/// epoch for a new history, the position's expiry (ms). Returns `{epoch, offset}`.
const TOP: &str = r#"
redis.call('HSETNX', KEYS[1], 'e', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
local p = redis.call('HMGET', KEYS[1], 'e', 'o')
return {p[1], p[2] or '0'}
"#;

/// The keys and arguments of [`APPEND`] (added to `cmd`): `trigger` appended to `path`'s history, a new
/// one starting in `epoch`.
pub(super) fn append_args(
    cmd: &mut Cmd,
    prefix: &str,
    path: &str,
    epoch: &str,
    history: &HistoryLimits,
    trigger: &[u8],
) {
    let keys = PathKeys::new(prefix, path);
    cmd.arg(2)
        .arg(&keys.meta)
        .arg(&keys.stream)
        .arg(epoch)
        .arg(history.size)
        .arg(trigger)
        .arg(millis(history.age))
        .arg(&keys.channel)
        .arg(millis(META_TTL));
}

/// The position of `path` through [`TOP`] (as `script`), starting its history if it has none.
pub(super) async fn read_top(
    script: &Lua,
    connection: &mut (impl ConnectionLike + Send),
    prefix: &str,
    path: &str,
) -> Result<Cursor, RedisError> {
    let keys = PathKeys::new(prefix, path);
    let epoch = new_epoch();
    script
        .run::<(String, u64)>(connection, |cmd| {
            cmd.arg(1)
                .arg(&keys.meta)
                .arg(&*epoch)
                .arg(millis(META_TTL));
        })
        .await
        .map(position)
}

/// The script that reads (and starts) a path's position.
pub(super) fn top_script() -> Lua {
    Lua::new(TOP.to_owned())
}

/// A position as the scripts return it.
pub(super) fn position(value: (String, u64)) -> Cursor {
    Cursor::new(Arc::from(value.0), value.1)
}
