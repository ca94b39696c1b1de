-- Appends one event to a channel's history and publishes it, atomically, so
-- that offsets, history order and Pub/Sub order are one and the same.
--
-- KEYS[1]  meta hash of the channel: e = epoch (decimal uint64, kept as a
--          string: Lua numbers cannot hold it), o = offset of the newest event
-- KEYS[2]  history stream of the channel; entry id "<offset>-0",
--          fields t = type, d = data, p = publish time (Unix ns)
-- ARGV[1]  epoch to use if the channel has none (random, chosen by the caller)
-- ARGV[2]  Pub/Sub channel
-- ARGV[3]  event type
-- ARGV[4]  event data
-- ARGV[5]  publish time, Unix nanoseconds (decimal)
-- ARGV[6]  history size (MAXLEN, exact)
-- ARGV[7]  history TTL, milliseconds
--
-- Returns {epoch, offset}.
local e = redis.call('hget', KEYS[1], 'e')
if not e then
  -- A new epoch starts a new history: drop whatever an older epoch left.
  e = ARGV[1]
  redis.call('del', KEYS[2])
  redis.call('hset', KEYS[1], 'e', e, 'o', 0)
end
local o = redis.call('hincrby', KEYS[1], 'o', 1)
local os = string.format('%d', o)
redis.call('xadd', KEYS[2], 'MAXLEN', ARGV[6], os .. '-0', 't', ARGV[3], 'd', ARGV[4], 'p', ARGV[5])
redis.call('pexpire', KEYS[1], ARGV[7])
redis.call('pexpire', KEYS[2], ARGV[7])
-- Envelope (see envelope.go): version, epoch, offset, time, type, data.
redis.call('publish', ARGV[2], '1\n' .. e .. '\n' .. os .. '\n' .. ARGV[5] .. '\n' .. ARGV[3] .. '\n' .. ARGV[4])
return {e, o}
