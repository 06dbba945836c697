//! The Lua scripts of [`super::RedisStore`]. Each runs atomically on the node that owns its
//! first key. Scripts that take `local` (`ARGV` flag `"1"`) run on a single node (single
//! Redis or Sentinel) and then do the whole change, including keys in other hash slots,
//! in the one script; with `"0"` (Redis Cluster) they touch only the keys of their own slot
//! and return what the caller must finish elsewhere.
//!
//! Custom errors start with `SIGNETDECODE` (stored data that is not what Signet writes) or
//! `SIGNETNOTCOUNTER` (an increment of a non-counter).

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the scripts.
const LIB: &str = r#"
local function split(s)
  local out = {}
  if s then
    for part in string.gmatch(s, '[^\n]+') do out[#out + 1] = part end
  end
  return out
end

-- Makes `key` live at least `ttl` ms from now.
local function extend(key, ttl)
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end

-- Cluster mode: marks the index as deleted-from (bumps its generation) and returns its
-- members. Members stay until the caller has deleted them (HDEL), so a failed delete can be
-- retried.
local function take(idx)
  if redis.call('EXISTS', idx) == 0 then return {} end
  redis.call('HINCRBY', idx, '#g', 1)
  local out = {}
  for _, m in ipairs(redis.call('HKEYS', idx)) do
    if m ~= '#g' then out[#out + 1] = m end
  end
  return out
end

-- Local mode: deletes an item (entry or family record) with everything hanging off it.
local removed = 0
local drop_index
local function drop_item(key)
  local f = redis.call('HMGET', key, 'i', 'cur')
  if redis.call('DEL', key) == 0 then return end
  removed = removed + 1
  for _, idx in ipairs(split(f[1])) do redis.call('HDEL', idx, key) end
  if f[2] then
    -- A family record `<prefix>:{f:<id>}:r`: its retired set and its index go with it.
    local base = string.sub(key, 1, -2)
    redis.call('DEL', base .. 'x')
    drop_index(base .. 'i')
  end
end
drop_index = function(idx)
  local members = redis.call('HKEYS', idx)
  redis.call('DEL', idx)
  for _, m in ipairs(members) do
    if m ~= '#g' then drop_item(m) end
  end
end
"#;

fn script(body: &str) -> Script {
    Script::new(&format!("{LIB}\n{body}"))
}

/// KEYS: entry, then (local) its index keys. ARGV: value, ttl ms, index list, local, nonce.
/// Returns the entry's previous index list (cluster: the caller drops stale memberships).
pub static PUT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local key = KEYS[1]
local ttl = tonumber(ARGV[2])
local old = false
if redis.call('TYPE', key).ok == 'hash' then old = redis.call('HGET', key, 'i') end
redis.call('DEL', key)
local fields = {'v', ARGV[1]}
if ARGV[3] ~= '' then fields[#fields + 1] = 'i'; fields[#fields + 1] = ARGV[3] end
if ARGV[5] ~= '' then fields[#fields + 1] = 'w'; fields[#fields + 1] = ARGV[5] end
redis.call('HSET', key, unpack(fields))
redis.call('PEXPIRE', key, ttl)
if ARGV[4] == '1' then
  local new = {}
  for i = 2, #KEYS do
    new[KEYS[i]] = true
    redis.call('HSET', KEYS[i], key, '1')
    extend(KEYS[i], ttl)
  end
  for _, idx in ipairs(split(old)) do
    if not new[idx] then redis.call('HDEL', idx, key) end
  end
  return ''
end
return old or ''
"#,
    )
});

/// KEYS: entry. ARGV: value, ttl ms. Returns 1 if written, 0 if a live entry was there.
pub static INSERT: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'v', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"#,
    )
});

/// KEYS: entry. ARGV: local. Atomically reads and deletes; returns `{}` or `{value, index
/// list}` (cluster: the caller drops the memberships).
pub static CONSUME: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local key = KEYS[1]
if redis.call('EXISTS', key) == 0 then return {} end
local h = redis.call('HMGET', key, 'v', 'i')
if not h[1] then return redis.error_reply('SIGNETDECODE entry without a value') end
redis.call('DEL', key)
if ARGV[1] == '1' then
  for _, idx in ipairs(split(h[2])) do redis.call('HDEL', idx, key) end
end
return {h[1], h[2] or ''}
"#,
    )
});

/// KEYS: entry. ARGV: window ms. Fixed-window counter.
pub static INCR: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local cur = redis.call('HGET', KEYS[1], 'v')
if cur and not string.match(cur, '^%d+$') then
  return redis.error_reply('SIGNETNOTCOUNTER the entry is not a counter')
end
local n = redis.call('HINCRBY', KEYS[1], 'v', 1)
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
"#,
    )
});

/// Cluster. KEYS: index. ARGV: member, ttl ms. Returns `{generation, newly added}`.
pub static INDEX_ADD: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local added = redis.call('HSET', KEYS[1], ARGV[1], '1')
extend(KEYS[1], tonumber(ARGV[2]))
return {redis.call('HGET', KEYS[1], '#g') or '0', added}
"#,
    )
});

/// Cluster. KEYS: index. ARGV: member, generation. 1 if the member is still there and no
/// delete-by-index started since the generation was read.
pub static INDEX_CHECK: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
if (redis.call('HGET', KEYS[1], '#g') or '0') ~= ARGV[2] then return 0 end
return 1
"#,
    )
});

/// Cluster. KEYS: item, then keys that go with it. ARGV: nonce. Deletes them if the item
/// still holds the write with this nonce.
pub static DELETE_IF_NONCE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if redis.call('HGET', KEYS[1], 'w') == ARGV[1] then
  redis.call('DEL', unpack(KEYS))
  return 1
end
return 0
"#,
    )
});

/// Cluster. KEYS: entry. Deletes it; returns `{deleted, index list}`.
pub static DROP_ENTRY: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local i = redis.call('HGET', KEYS[1], 'i')
return {redis.call('DEL', KEYS[1]), i or ''}
"#,
    )
});

/// KEYS: record, retired set, then (local) index keys. ARGV: token key, value, ttl ms, index
/// list, local, nonce. Returns 1 if created, 0 if the family exists.
pub static FAMILY_CREATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local r = KEYS[1]
local ttl = tonumber(ARGV[3])
if redis.call('EXISTS', r) == 1 then return 0 end
redis.call('DEL', KEYS[2])
local fields = {'cur', ARGV[1], 'v', ARGV[2]}
if ARGV[4] ~= '' then fields[#fields + 1] = 'i'; fields[#fields + 1] = ARGV[4] end
if ARGV[6] ~= '' then fields[#fields + 1] = 'w'; fields[#fields + 1] = ARGV[6] end
redis.call('HSET', r, unpack(fields))
redis.call('PEXPIRE', r, ttl)
if ARGV[5] == '1' then
  for i = 3, #KEYS do
    redis.call('HSET', KEYS[i], r, '1')
    extend(KEYS[i], ttl)
  end
end
return 1
"#,
    )
});

/// KEYS: record, retired set, family index. ARGV: presented, new key, new value, ttl ms,
/// local. Returns `{0}` unknown, `{1, old value}` rotated, `{2, removed}` reused (local) or
/// `{2, index list, member...}` reused (cluster: the caller deletes the members).
pub static ROTATE: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local r, x = KEYS[1], KEYS[2]
local f = redis.call('HMGET', r, 'cur', 'v', 'i')
if not f[1] or not f[2] then
  if redis.call('EXISTS', r) == 1 then
    return redis.error_reply('SIGNETDECODE family record without its current token')
  end
  return {0}
end
if f[1] == ARGV[1] then
  redis.call('HSET', r, 'cur', ARGV[2], 'v', ARGV[3])
  redis.call('SADD', x, ARGV[1])
  redis.call('PEXPIRE', r, ARGV[4])
  redis.call('PEXPIRE', x, ARGV[4])
  return {1, f[2]}
end
if redis.call('SISMEMBER', x, ARGV[1]) == 0 then return {0} end
if ARGV[5] == '1' then
  drop_item(r)
  return {2, removed}
end
redis.call('DEL', r, x)
local out = {2, f[3] or ''}
for _, m in ipairs(take(KEYS[3])) do out[#out + 1] = m end
return out
"#,
    )
});

/// KEYS: record, retired set, family index. ARGV: local. Returns `{removed}` (local) or
/// `{existed, index list, member...}` (cluster).
pub static FAMILY_DROP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
local r = KEYS[1]
if ARGV[1] == '1' then
  if redis.call('EXISTS', r) == 1 then drop_item(r) else drop_index(KEYS[3]) end
  return {removed}
end
local i = redis.call('HGET', r, 'i')
local out = {redis.call('DEL', r), i or ''}
redis.call('DEL', KEYS[2])
for _, m in ipairs(take(KEYS[3])) do out[#out + 1] = m end
return out
"#,
    )
});

/// Cluster. KEYS: index. ARGV: members deleted after a `take`. Removes them, and the index
/// itself once nothing but its generation is left (a put adding a member meanwhile keeps it).
pub static INDEX_FORGET: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
redis.call('HDEL', KEYS[1], unpack(ARGV))
if redis.call('HLEN', KEYS[1]) == 1 and redis.call('HEXISTS', KEYS[1], '#g') == 1 then
  redis.call('DEL', KEYS[1])
end
return 1
"#,
    )
});

/// KEYS: index. ARGV: local. Returns `{removed}` (local) or `{member...}` (cluster, see
/// `take`).
pub static INDEX_DROP: LazyLock<Script> = LazyLock::new(|| {
    script(
        r#"
if ARGV[1] == '1' then
  drop_index(KEYS[1])
  return {removed}
end
return take(KEYS[1])
"#,
    )
});
