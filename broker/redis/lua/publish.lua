#!lua
-- Appends a batch of events to their channels' histories and publishes each,
-- atomically and all or nothing: offsets, history order and Pub/Sub order
-- are one and the same, and either every event of the run is applied or none
-- is. Redis does not undo a script that fails half-way, so everything that
-- could fail is checked before the first write: key types here, memory by
-- Redis itself (a script with a shebang and no allow-oom flag is refused
-- before it starts when Redis is out of memory). One run carries a whole
-- batch on one Redis, one channel's events on a Redis Cluster.
--
-- KEYS[2i-1]  meta hash of event i's channel: e = epoch (decimal uint64, kept
--             as a string: Lua numbers cannot hold it), o = offset of the
--             newest event
-- KEYS[2i]    history stream of event i's channel; entry id "<offset>-0",
--             fields t = type, d = data, p = publish time (Unix ns)
-- KEYS[#KEYS] when ARGV[5] is not "0": the idempotency key of the run
-- ARGV[1]     epoch for a channel that has none (random, chosen by the caller)
-- ARGV[2]     publish time, Unix nanoseconds (decimal)
-- ARGV[3]     history size (MAXLEN, exact)
-- ARGV[4]     history TTL, milliseconds (also the idempotency key's)
-- ARGV[5]     "0", or the fingerprint of the run's events (hex) when the
--             last key is an idempotency key
-- ARGV[3i+3]  Pub/Sub channel of event i
-- ARGV[3i+4]  type of event i
-- ARGV[3i+5]  data of event i
--
-- Returns {epoch_1, offset_1, epoch_2, offset_2, ...}, one pair an event; or,
-- when the idempotency key was used already, {"dup", record}: the key's
-- record "<fingerprint> <epoch> <offset> ...", the fingerprint of the events
-- of the run that used it and what that run published (records written
-- before fingerprints were stored lack the fingerprint). The caller compares
-- the fingerprints: a repeat is answered the positions, another batch is a
-- conflict.
local now, size, ttl = ARGV[2], ARGV[3], ARGV[4]
local n = #KEYS
local ik
if ARGV[5] ~= '0' then
  ik = KEYS[n]
  n = n - 1
  local prev = redis.call('get', ik)
  if prev then
    return {'dup', prev}
  end
end
n = n / 2

-- Checks: no write happens before all of them passed.
local checked = {}
for i = 1, n do
  local mk, sk = KEYS[2 * i - 1], KEYS[2 * i]
  if not checked[mk] then
    checked[mk] = true
    local mt = redis.call('type', mk)['ok']
    local st = redis.call('type', sk)['ok']
    if (mt ~= 'none' and mt ~= 'hash') or (st ~= 'none' and st ~= 'stream') then
      return redis.error_reply('WRONGTYPE sluice: ' .. mk .. ' or ' .. sk .. ' holds another type of value')
    end
  end
end

local epochs = {} -- meta key -> epoch, for the channels seen in this run
local out = {}
for i = 1, n do
  local mk, sk = KEYS[2 * i - 1], KEYS[2 * i]
  local e = epochs[mk]
  local first = not e -- the channel's first event in this run
  if first then
    e = redis.call('hget', mk, 'e')
    if not e then
      -- A new epoch starts a new history: drop whatever an older epoch left.
      e = ARGV[1]
      redis.call('del', sk)
      redis.call('hset', mk, 'e', e, 'o', 0)
    end
    epochs[mk] = e
    redis.call('pexpire', mk, ttl)
  end
  local o = redis.call('hincrby', mk, 'o', 1)
  local os = string.format('%d', o)
  local a = 3 * i + 3
  redis.call('xadd', sk, 'MAXLEN', size, os .. '-0', 't', ARGV[a + 1], 'd', ARGV[a + 2], 'p', now)
  if first then
    redis.call('pexpire', sk, ttl)
  end
  -- Envelope (see decodeEnvelope in pubsub.go): version, epoch, offset, time, type, data.
  redis.call('publish', ARGV[a], '1\n' .. e .. '\n' .. os .. '\n' .. now .. '\n' .. ARGV[a + 1] .. '\n' .. ARGV[a + 2])
  out[2 * i - 1] = e
  out[2 * i] = o
end
if ik then
  redis.call('set', ik, ARGV[5] .. ' ' .. table.concat(out, ' '), 'PX', ttl)
end
return out
